"""`serveplan quantize`: errors without any ML library; end to end on CPU with a tiny random Llama.

The tiny model (hidden 128, 2 layers, vocab 1024, random bf16 weights) and its WordLevel tokenizer are built here,
nothing is downloaded. Its numbers are mechanics, not quality: random weights have a perplexity near the vocab
size whatever the precision.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from serveplan.errors import ConfigError
from serveplan.quantize import inputs, methods, output, recipe, report, run
from serveplan.quantize import sizes as ckpt_sizes
from serveplan.quantize.perplexity import BUILTIN_CALIBRATION, BUILTIN_EVAL, read_text
from serveplan.planner.spec import GPUSpec

VOCAB = 1024


def make_tiny_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=512,
                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    words = Counter(re.findall(r"\w+|[^\w\s]", (read_text(BUILTIN_CALIBRATION) + read_text(BUILTIN_EVAL)).lower()))
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2}
    for w, _ in words.most_common(VOCAB - 3):
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="</s>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="the tiny model needs PyTorch")
    pytest.importorskip("transformers", reason="the tiny model needs transformers (serveplan[quantize])")
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# ------------------------------------------------------------------------------------ no ML library needed
def test_unknown_method_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown quantization method 'int4'; valid: awq, gptq, fp8, w8a8"):
        run.quantize(str(tmp_path), "int4", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_int8_is_the_planner_name_of_w8a8() -> None:
    assert methods.resolve_method("int8").name == "w8a8" and methods.resolve_method("INT8").planner_dtype == "int8"
    assert {m.planner_dtype for m in methods.METHODS.values()} == {"fp8", "int8", "awq", "gptq"}


def test_missing_library_is_one_sentence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llmcompressor", None)  # import llmcompressor -> ImportError
    with pytest.raises(methods.QuantizeError) as e:
        run.quantize(str(tmp_path), "fp8", tmp_path / "out")
    assert str(e.value) == "quantize needs llm-compressor: pip install 'serveplan[quantize]'"


def test_cli_dispatch_and_exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from serveplan import cli

    assert "quantize" in cli.SUBCOMMANDS
    rc = cli.main(["quantize", "--model", str(tmp_path), "--method", "nf4", "-o", str(tmp_path / "o")])
    assert rc == 2 and "valid: awq, gptq, fp8, w8a8" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "llmcompressor", None)
    rc = cli.main(["quantize", "--model", str(tmp_path), "--method", "gptq", "-o", str(tmp_path / "o")])
    assert rc == 2 and "pip install 'serveplan[quantize]'" in capsys.readouterr().err


def test_gpu_checks() -> None:
    a100 = methods.gpu_spec("A100")
    notes = methods.check_gpu(methods.METHODS["fp8"], a100)
    assert notes and "weight-only" in notes[0]
    assert methods.check_gpu(methods.METHODS["fp8"], methods.gpu_spec("H100")) == []
    assert methods.check_gpu(methods.METHODS["w8a8"], a100) == []
    no_int8 = GPUSpec(**{**a100.model_dump(), "tflops": {"bf16": 312.0, "fp16": 312.0}})
    with pytest.raises(methods.QuantizeError, match="w8a8 needs INT8 tensor cores"):
        methods.check_gpu(methods.METHODS["w8a8"], no_int8)
    volta = GPUSpec(**{**a100.model_dump(), "compute_capability": 7.0})
    with pytest.raises(methods.QuantizeError, match="compute capability 8.0"):
        methods.check_gpu(methods.METHODS["gptq"], volta)


def test_preflight_refuses_small_disk_and_memory(tmp_path: Path) -> None:
    from serveplan.testing.factories import model

    spec = model("llama-3.1-8b")  # ~16 GB bf16, ~5.7 GB at 4 bits
    with pytest.raises(methods.QuantizeError, match=r"host memory.*only 8\.0 GB is available"):
        inputs.preflight(spec, methods.METHODS["gptq"], tmp_path / "o", mem_available=8e9, disk_free=1e12)
    with pytest.raises(methods.QuantizeError, match=r"needs about 6\.\d\d GB on disk, but only 2\.00 GB is free"):
        inputs.preflight(spec, methods.METHODS["gptq"], tmp_path / "o", mem_available=1e12, disk_free=2e9)
    ok = inputs.preflight(spec, methods.METHODS["fp8"], tmp_path / "o", mem_available=1e12, disk_free=1e12)
    assert 9 < ok["disk_needed_gb"] < 11  # 8.0B params at ~1 byte, +10% and 50 MB


def test_meminfo_parse(tmp_path: Path) -> None:
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       24000000 kB\nMemAvailable:   2000000 kB\n")
    assert inputs.mem_available_bytes(f) == 2000000 * 1024
    assert inputs.mem_available_bytes(tmp_path / "absent") is None


# ------------------------------------------------------------------------------------ end to end on CPU
@pytest.mark.slow
@pytest.mark.parametrize("method", ["fp8", "gptq", "awq", "w8a8"])
def test_quantize_tiny_model_on_cpu(tiny: Path, tmp_path: Path, method: str) -> None:
    pytest.importorskip("llmcompressor", reason="needs llm-compressor (serveplan[quantize])")
    import torch
    from transformers import AutoModelForCausalLM

    from serveplan.planner.catalog import model_from_hf_config

    out = tmp_path / f"tiny-{method}"
    rep = run.quantize(str(tiny), method, out, samples=8, seq_len=64, command="test", log=lambda m: None)
    assert out.is_dir() and not _leftovers(tmp_path, out.name)
    on_disk = json.loads((out / report.REPORT).read_text())
    assert on_disk["method"] == method and on_disk["command"] == "test"
    assert on_disk["versions"]["llmcompressor"] and on_disk["versions"]["transformers"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "compressed-tensors"
    assert cfg["quantization_config"]["ignore"] == ["lm_head"]  # the modules left out (a dense model has no router)

    # Sizes: the checkpoint shrinks; the linear layers match the planner's prediction from the output config.
    spec = model_from_hf_config(out / "config.json")
    pred = ckpt_sizes.predicted_bytes(spec, methods.METHODS[method].planner_dtype)
    sizes = ckpt_sizes.safetensors_sizes(out)
    orig = ckpt_sizes.safetensors_sizes(tiny)
    assert sizes["total"] < orig["total"]
    assert abs(sizes["linear"] - pred["linear"]) / pred["linear"] < 0.05, (sizes, pred)
    assert abs(sizes["total"] - pred["total"]) / pred["total"] < 0.02
    expected_linear_ratio = {"fp8": 0.5, "w8a8": 0.5, "gptq": 0.26, "awq": 0.26}[method]
    assert sizes["linear"] / orig["linear"] == pytest.approx(expected_linear_ratio, rel=0.05)
    assert abs(rep["predicted"]["rel_diff_quantized_linear"]) < 0.05

    # Quality: both perplexities computed on the built-in held-out text, finite.
    ppl = rep["perplexity"]
    assert ppl["original"]["tokens"] == ppl["quantized"]["tokens"] > 500
    assert math.isfinite(ppl["original"]["perplexity"]) and math.isfinite(ppl["quantized"]["perplexity"])
    assert abs(ppl["delta_pct"]) < 10  # random weights: tiny change; mechanics only

    # The checkpoint reloads (compressed-tensors through transformers) and a forward pass runs.
    m = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        logits = m(torch.tensor([[0, 5, 6, 7]])).logits
    assert logits.shape == (1, 4, VOCAB) and torch.isfinite(logits).all()


def test_failure_leaves_nothing_half_written(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llmcompressor", reason="needs llm-compressor (serveplan[quantize])")
    real_save = output.save_checkpoint

    def save_then_die(model, tokenizer, folder):  # noqa: ANN001, ANN202
        real_save(model, tokenizer, folder)
        assert any(Path(folder).glob("*.safetensors"))  # half written: weights are there, the report is not
        raise OSError("disk went away")

    monkeypatch.setattr(run, "save_checkpoint", save_then_die)
    out = tmp_path / "ckpt"
    with pytest.raises(OSError, match="disk went away"):
        run.quantize(str(tiny), "fp8", out, skip_eval=True, log=lambda m: None)
    assert not out.exists() and not _leftovers(tmp_path, "ckpt")

    # An existing OUT is kept when the new run fails, and refused without --overwrite.
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(methods.QuantizeError, match="already exists"):
        run.quantize(str(tiny), "fp8", out, skip_eval=True, log=lambda m: None)
    with pytest.raises(OSError):
        run.quantize(str(tiny), "fp8", out, skip_eval=True, overwrite=True, log=lambda m: None)
    assert (out / "keep").read_text() == "x" and not _leftovers(tmp_path, "ckpt")
    monkeypatch.setattr(run, "save_checkpoint", real_save)
    run.quantize(str(tiny), "fp8", out, skip_eval=True, overwrite=True, log=lambda m: None)
    assert not (out / "keep").exists() and (out / report.REPORT).is_file() and not _leftovers(tmp_path, "ckpt")


def test_library_failure_is_one_sentence(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llmcompressor", reason="needs llm-compressor (serveplan[quantize])")
    monkeypatch.delenv("SERVEPLAN_DEBUG", raising=False)

    def broken(method):  # noqa: ANN001, ANN202
        raise RuntimeError("no mapping for this architecture\nmore detail")

    monkeypatch.setattr(recipe, "build_recipe", broken)
    with pytest.raises(methods.QuantizeError, match=r"llm-compressor failed to quantize .* with gptq: RuntimeError: "
                                                r"no mapping for this architecture \(SERVEPLAN_DEBUG"):
        run.quantize(str(tiny), "gptq", tmp_path / "o", samples=2, seq_len=32, skip_eval=True, log=lambda m: None)
    assert not (tmp_path / "o").exists() and not _leftovers(tmp_path, "o")


@pytest.mark.parametrize("name,kept", [
    ("lm_head", True), ("model.layers.3.mlp.gate", True), ("model.layers.3.mlp.shared_expert_gate", True),
    ("model.layers.3.block_sparse_moe.gate", True), ("model.layers.3.mlp.gate_proj", False),
    ("model.layers.3.mlp.experts.7.gate_proj", False), ("model.layers.3.block_sparse_moe.experts.1.w1", False),
    ("model.layers.3.self_attn.q_proj", False)])
def test_every_method_leaves_the_lm_head_and_moe_routers_in_bf16(name: str, kept: bool) -> None:
    # compressed-tensors matches "re:" entries with re.match against the module's name; vLLM builds Mixtral's router
    # without the quantization config (no parameter for a quantized router's scales)
    pytest.importorskip("llmcompressor", reason="needs llm-compressor (serveplan[quantize])")
    matched = any(re.match(p[3:], name) if p.startswith("re:") else p == name for p in recipe.IGNORE)
    assert matched == kept
    for method in methods.METHODS.values():  # the quantizing modifier of each method takes the list
        quant = [m for m in recipe.build_recipe(method) if type(m).__name__ in ("QuantizationModifier", "GPTQModifier")]
        assert len(quant) == 1 and quant[0].ignore == recipe.IGNORE, method
