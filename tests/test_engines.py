"""Engine adapters: rendered commands are valid against the pinned engines' extracted flag schemas."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from serveplan.errors import ConfigError, UnknownName
from serveplan.render.engines.base import (SCHEMA_DIR, EngineAdapter, ReplicaLaunch, assign_gpus, get_adapter,
                                             parse_prometheus, replica_port)
from serveplan.planner.spec import (SLO, Candidate, EngineConfig, Inventory, LengthDist, PlanRequest, SearchConfig,
                                    Traffic)
from serveplan.testing import factories

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- helpers
VLLM_VERSIONS = ["0.26.0", "0.33.0"]  # every vLLM version with a schema; the contract runs for each


def make_request(engine: str = "vllm", *, nodes: int = 1, gpus_per_node: int = 8, version: str | None = None,
                 multicast: bool = True, slo: SLO | None = None) -> PlanRequest:
    model = factories.model("llama-3.1-8b", hf_id="meta-llama/Llama-3.1-8B")
    gpu = factories.gpu("h100-sxm")
    return PlanRequest(model=model, inventory=Inventory(gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node,
                                                        nvlink_multicast=multicast),
                       traffic=Traffic(input_len=LengthDist(kind="fixed", mean=1024),
                                       output_len=LengthDist(kind="fixed", mean=256), rate_rps=4),
                       slo=slo or SLO(ttft_p99_ms=2000), search=SearchConfig(),
                       engine=EngineConfig(name=engine, version=version or get_adapter(engine).version,
                                           kv_free_memory_fraction=0.85))


CANDIDATES = [
    Candidate(tp=1, pp=1, replicas=1),
    Candidate(tp=2, pp=1, replicas=3, weight_dtype="fp8", kv_cache_dtype="fp8", max_num_seqs=128,
              max_num_batched_tokens=16384, chunked_prefill=False, enable_prefix_caching=False,
              gpu_memory_utilization=0.85, max_model_len=4096),
    Candidate(tp=2, pp=2, replicas=2, weight_dtype="awq", max_num_seqs=64, max_num_batched_tokens=2048),
    Candidate(tp=4, pp=1, replicas=2, weight_dtype="gptq", kv_cache_dtype="fp8", max_model_len=32768),
    Candidate(tp=1, pp=1, replicas=4, weight_dtype="int8", max_num_seqs=512),
    Candidate(tp=8, pp=1, replicas=1, weight_dtype="fp16", chunked_prefill=False),
]

OOM_LINES = {
    "vllm": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
            "of 79.11 GiB of which 1.2 GiB is free.",
    "sglang": "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
    "trtllm": "[TensorRT-LLM][ERROR] CUDA runtime error in cudaMalloc: out of memory",
    "tgi": "RuntimeError: Not enough memory to handle 16384 prefill tokens. You need to decrease "
           "`--max-batch-prefill-tokens`",
}


def render_all(adapter: EngineAdapter, cand: Candidate, request: PlanRequest, **kw) -> list[ReplicaLaunch]:
    gpus = assign_gpus(cand, request.inventory.gpus_per_node)
    return [adapter.render(_online(cand.model_copy(update={"engine": adapter.name})), request,
                           model="meta-llama/Llama-3.1-8B",
                           replica=i, gpus=gpus[i], port=replica_port(8000, i), **kw)
            for i in range(cand.replicas)]


def _online(cand: Candidate) -> Candidate:
    """The contract renders the base checkpoint; fp8 on it is the engine's load-time quantization."""
    from serveplan.planner.spec import Checkpoint

    if cand.weight_dtype in ("bf16", "fp16"):
        return cand
    src = "online" if cand.weight_dtype == "fp8" and cand.engine != "trtllm" else "published"
    fmt = "hf" if src == "online" else ("modelopt" if cand.engine == "trtllm" else "compressed-tensors")
    return cand.model_copy(update={"checkpoint": Checkpoint(
        id="meta-llama/Llama-3.1-8B", source=src, format=fmt, weight_dtype=cand.weight_dtype,
        base_id="meta-llama/Llama-3.1-8B")})


def flag_value(argv: list[str], *names: str) -> str | None:
    for n in names:
        if n in argv:
            return argv[argv.index(n) + 1]
    return None


# ---------------------------------------------------------------------------------------------- contract
class EngineAdapterContract:
    """Every adapter passes these; subclasses set ENGINE and KNOBS (Candidate field -> flag(s) that carry it)."""

    ENGINE = ""
    VERSION: str | None = None  # None: the engine's default version
    KNOBS: dict[str, tuple[str, ...]] = {}
    HOST_FLAG = "--host"
    SUPPORTS_PP = True  # False: a PP>1 candidate is refused with one sentence (test_pipeline_parallel)

    def _runs(self, cand: Candidate) -> None:
        if cand.pp > 1 and not self.SUPPORTS_PP:
            pytest.skip(f"{self.ENGINE} has no pipeline parallelism; test_pipeline_parallel checks the refusal")

    @pytest.fixture
    def adapter(self) -> EngineAdapter:
        return get_adapter(self.ENGINE, self.VERSION)

    @pytest.fixture
    def request_(self) -> PlanRequest:
        return make_request(self.ENGINE, version=self.VERSION)

    def test_protocol(self, adapter):
        assert isinstance(adapter, EngineAdapter)
        assert adapter.name == self.ENGINE and adapter.version and adapter.image.endswith(adapter.version)
        assert (SCHEMA_DIR / f"{adapter.name}-{adapter.version}.json").exists()

    @pytest.mark.parametrize("cand", CANDIDATES, ids=lambda c: c.label())
    def test_rendered_commands_validate(self, adapter, request_, cand):
        self._runs(cand)
        for launch in render_all(adapter, cand, request_, served_model_name="llama"):
            assert adapter.validate(launch.argv) == [], shlex.join(launch.argv)

    @pytest.mark.parametrize("cand", CANDIDATES, ids=lambda c: c.label())
    def test_knobs_present(self, adapter, request_, cand):
        self._runs(cand)
        launch = render_all(adapter, cand, request_)[0]
        for field_name, flags in self.KNOBS.items():
            assert any(f in launch.argv for f in flags), f"{field_name}: none of {flags} in {launch.argv}"
        assert flag_value(launch.argv, "--port") == str(launch.port)
        assert flag_value(launch.argv, self.HOST_FLAG) == "0.0.0.0"

    @pytest.mark.parametrize("cand", CANDIDATES, ids=lambda c: c.label())
    def test_replicas_disjoint(self, adapter, request_, cand):
        self._runs(cand)
        launches = render_all(adapter, cand, request_)
        assert len(launches) == cand.replicas
        seen: set[int] = set()
        for x in launches:
            assert len(x.gpus) == cand.gpus_per_replica
            assert not seen & set(x.gpus)
            seen |= set(x.gpus)
            assert x.env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, x.gpus))
        assert len({x.port for x in launches}) == cand.replicas
        assert [x.replica for x in launches] == list(range(cand.replicas))

    def test_pipeline_parallel(self, adapter, request_):
        cand = Candidate(tp=1, pp=2)
        if self.SUPPORTS_PP:
            assert adapter.validate(render_all(adapter, cand, request_)[0].argv) == []
            return
        with pytest.raises(ConfigError, match="pipeline parallelism") as e:
            render_all(adapter, cand, request_)
        assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")
        assert get_adapter(self.ENGINE)  # the engine's conf says so, so the search never proposes PP>1:
        from serveplan.planner import catalog
        assert catalog.catalog_doc("engine", self.ENGINE)["supports_pp"] is False

    def test_oom_patterns(self, adapter):
        line = OOM_LINES[self.ENGINE]
        assert any(re.search(p, line) for p in adapter.oom_patterns)
        assert not any(re.search(p, "INFO: Started server process; KV cache usage 42%") for p in adapter.oom_patterns)

    def test_validate_catches_problems(self, adapter, request_):
        argv = render_all(adapter, CANDIDATES[0], request_)[0].argv
        assert adapter.validate(argv + ["--definitely-not-a-flag", "1"])
        port_at = argv.index("--port")
        bad = argv[:port_at + 1] + ["eighty"] + argv[port_at + 2:]
        assert any("integer" in p for p in adapter.validate(bad))
        assert adapter.validate(argv[:port_at + 1])  # --port is missing its value... or last token dropped

    def test_extra_args_appended(self, adapter, request_):
        launch = render_all(adapter, CANDIDATES[0], request_, extra_args=("--port", "9999"))[0]
        assert launch.argv[-2:] == ["--port", "9999"]

    def test_health_and_metrics(self, adapter):
        assert adapter.health_url("0.0.0.0", 8001) == "http://127.0.0.1:8001/health"
        assert adapter.health_url("10.0.0.5", 8001) == "http://10.0.0.5:8001/health"
        m = adapter.parse_metrics(self.METRICS_TEXT)
        assert m["num_requests_running"] == 3 and m["num_requests_waiting"] == 2
        assert m["prompt_tokens_total"] == 1000 and m["generation_tokens_total"] == 500
        assert m["kv_cache_usage"] == pytest.approx(0.25)


class TestVLLM(EngineAdapterContract):
    """The vLLM contract at 0.26.0, the version measured on GPUs (TestVLLM033 runs it at the default, 0.33.0)."""

    ENGINE = "vllm"
    VERSION = "0.26.0"
    KNOBS = {"tp": ("--tensor-parallel-size",), "pp": ("--pipeline-parallel-size",),
             "max_num_seqs": ("--max-num-seqs",), "max_num_batched_tokens": ("--max-num-batched-tokens",),
             "max_model_len": ("--max-model-len",), "gpu_memory_utilization": ("--gpu-memory-utilization",),
             "kv_cache_dtype": ("--kv-cache-dtype",),
             "chunked_prefill": ("--enable-chunked-prefill", "--no-enable-chunked-prefill"),
             "enable_prefix_caching": ("--enable-prefix-caching", "--no-enable-prefix-caching"),
             "weight_dtype": ("--dtype",), "served_model_name": ("--served-model-name",)}
    METRICS_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_waiting{engine="0",model_name="llama"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama"} 0.25
vllm:prompt_tokens_total{engine="0",model_name="llama"} 1000.0
vllm:generation_tokens_total{engine="0",model_name="llama"} 500.0
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="llama"} 0.0
"""

    def _requests(self) -> list[PlanRequest]:
        """One node, two nodes (Ray), and TP>1 on nodes without NVLink multicast, at this version."""
        return [make_request("vllm", version=self.VERSION), make_request("vllm", nodes=2, version=self.VERSION),
                make_request("vllm", version=self.VERSION, multicast=False)]

    def _schema(self) -> dict:
        return json.loads((SCHEMA_DIR / f"vllm-{self.VERSION or get_adapter('vllm').version}.json").read_text())

    def test_values(self, adapter, request_):
        req = request_
        x = render_all(adapter, CANDIDATES[1], req, served_model_name="llama")[0]
        a = x.argv
        assert a[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B"]
        assert flag_value(a, "--quantization") == "fp8" and flag_value(a, "--kv-cache-dtype") == "fp8"
        assert "--no-enable-chunked-prefill" in a and "--no-enable-prefix-caching" in a
        assert flag_value(a, "--gpu-memory-utilization") == "0.85" and flag_value(a, "--max-model-len") == "4096"
        assert flag_value(a, "--served-model-name") == "llama"
        # Pre-quantized checkpoints (awq, gptq, int8) declare their method: no flag, vLLM picks the kernel.
        for i in (2, 3, 4):
            assert "--quantization" not in render_all(adapter, CANDIDATES[i], req)[0].argv
        assert flag_value(render_all(adapter, CANDIDATES[5], req)[0].argv, "--dtype") == "float16"
        # AWQ/GPTQ activations in bf16: float16 with an FP8 KV cache stops FlashAttention 3 at start (session 21).
        for i in (2, 3):
            assert flag_value(render_all(adapter, CANDIDATES[i], req)[0].argv, "--dtype") == "bfloat16"
        assert "--distributed-executor-backend" not in a

    def test_multinode_uses_ray(self, adapter):
        req = make_request("vllm", nodes=2, gpus_per_node=8, version=self.VERSION)
        cand = Candidate(tp=8, pp=2)
        x = adapter.render(cand, req, model="m", replica=0, gpus=list(range(8)), port=8000)
        assert flag_value(x.argv, "--distributed-executor-backend") == "ray"
        assert adapter.validate(x.argv) == []

    def test_multicast_off_validates(self, adapter):
        req = make_request("vllm", version=self.VERSION, multicast=False)
        for cand in CANDIDATES:
            for x in render_all(adapter, cand, req, served_model_name="s"):
                assert ("--compilation-config" in x.argv) == (cand.tp > 1)
                assert adapter.validate(x.argv) == [], shlex.join(x.argv)

    def test_every_rendered_flag_in_schema(self, adapter):
        """Golden-ish: each flag and named value a vLLM command uses exists in this version's schema."""
        schema = self._schema()
        assert schema["engine"] == "vllm" and schema["version"] == adapter.version
        for req in self._requests():
            for cand in CANDIDATES:
                for x in render_all(adapter, cand, req, served_model_name="s"):
                    for tok in x.argv[3:]:
                        if tok.startswith("--"):
                            assert tok in schema["flags"], tok
                    q = flag_value(x.argv, "--quantization")
                    assert q is None or q in schema["known_values"]["--quantization"], q
                    kv = flag_value(x.argv, "--kv-cache-dtype")
                    named = schema["flags"]["--kv-cache-dtype"]["choices"] or schema["known_values"]["--kv-cache-dtype"]
                    assert kv in named, kv
        assert {"awq_marlin", "gptq_marlin", "fp8"} <= set(schema["known_values"]["--quantization"])

    def test_image_follows_the_version(self, adapter):
        assert adapter.image == f"vllm/vllm-openai:v{adapter.version}"

    def test_real_vllm_parser(self, adapter):
        try:
            import vllm  # noqa: F401
            from vllm.utils.argparse_utils import FlexibleArgumentParser
            try:
                from vllm.entrypoints.openai.cli_args import make_arg_parser
            except ImportError:  # moved by 0.33
                from vllm.entrypoints.common.cli_args import make_arg_parser
        except Exception as e:  # ImportError, or a broken install
            pytest.skip(f"vllm not installed: {e}")
        if vllm.__version__ != adapter.version:
            pytest.skip(f"vllm {vllm.__version__} installed, schema is for {adapter.version}")
        try:
            parser = make_arg_parser(FlexibleArgumentParser())
        except RuntimeError:  # no accelerator: vLLM cannot infer a device for help defaults
            import vllm.platforms as platforms
            from vllm.platforms.cpu import CpuPlatform

            platforms._current_platform = CpuPlatform()
            parser = make_arg_parser(FlexibleArgumentParser())
        for req in self._requests():
            for cand in CANDIDATES:
                x = render_all(adapter, cand, req, served_model_name="s")[0]
                args = parser.parse_args(x.argv[2:])
                assert args.tensor_parallel_size == cand.tp and args.pipeline_parallel_size == cand.pp
                assert args.max_num_seqs == cand.max_num_seqs
                assert args.max_num_batched_tokens == cand.max_num_batched_tokens
                assert args.enable_chunked_prefill is cand.chunked_prefill
                assert args.enable_prefix_caching is cand.enable_prefix_caching
                assert args.port == x.port


class TestVLLM033(TestVLLM):
    """The whole vLLM contract again at the default version (None: 0.33.0), plus what 0.33.0 dropped and added."""

    VERSION = None

    def test_default_is_033(self, adapter):
        assert adapter.version == "0.33.0" and adapter is get_adapter("vllm", "0.33.0")

    def test_flags_removed_since_026_never_rendered(self, adapter):
        old = json.loads((SCHEMA_DIR / "vllm-0.26.0.json").read_text())
        new = self._schema()
        removed = set(old["flags"]) - set(new["flags"])
        assert {"--max-num-partial-prefills", "--max-long-partial-prefills", "--calculate-kv-scales"} <= removed
        assert "bitsandbytes" not in new["known_values"]["--quantization"]
        for req in self._requests():
            for cand in CANDIDATES:
                for x in render_all(adapter, cand, req, served_model_name="s"):
                    assert not removed & set(x.argv), removed & set(x.argv)
                    assert flag_value(x.argv, "--quantization") != "bitsandbytes"


class TestSGLang(EngineAdapterContract):
    ENGINE = "sglang"
    KNOBS = {"tp": ("--tp-size",), "pp": ("--pp-size",), "max_num_seqs": ("--max-running-requests",),
             "max_num_batched_tokens": ("--chunked-prefill-size",), "max_model_len": ("--context-length",),
             "gpu_memory_utilization": ("--mem-fraction-static",), "kv_cache_dtype": ("--kv-cache-dtype",),
             "weight_dtype": ("--dtype",), "model": ("--model-path",)}
    METRICS_TEXT = """# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="llama",tp_rank="0"} 3.0
sglang:num_queue_reqs{model_name="llama",tp_rank="0"} 2.0
sglang:token_usage{model_name="llama",tp_rank="0"} 0.25
sglang:prompt_tokens_total{model_name="llama"} 1000.0
sglang:generation_tokens_total{model_name="llama"} 500.0
"""

    def test_values(self, adapter):
        req = make_request("sglang")
        a = render_all(adapter, CANDIDATES[1], req)[0].argv
        assert a[:3] == ["python", "-m", "sglang.launch_server"]
        assert flag_value(a, "--chunked-prefill-size") == "-1"  # chunked prefill off
        assert flag_value(a, "--kv-cache-dtype") == "fp8_e4m3" and flag_value(a, "--quantization") == "fp8"
        assert "--disable-radix-cache" in a
        on = render_all(adapter, CANDIDATES[0], req)[0].argv
        assert flag_value(on, "--chunked-prefill-size") == "8192" and "--disable-radix-cache" not in on
        assert "--dp" not in on and "--dp-size" not in on


class TestTRTLLM(EngineAdapterContract):
    ENGINE = "trtllm"
    KNOBS = {"tp": ("--tp_size",), "pp": ("--pp_size",), "max_num_seqs": ("--max_batch_size",),
             "max_num_batched_tokens": ("--max_num_tokens",), "max_model_len": ("--max_seq_len",),
             "backend": ("--backend",), "options": ("--extra_llm_api_options",)}
    METRICS_TEXT = """trtllm_num_requests_running 3
trtllm_num_requests_waiting 2
trtllm_kv_cache_utilization 0.25
trtllm_prompt_tokens_total 1000
trtllm_generation_tokens_total 500
"""

    @pytest.mark.parametrize("cand", CANDIDATES, ids=lambda c: c.label())
    def test_options_file(self, adapter, cand):
        req = make_request("trtllm")
        for x in render_all(adapter, cand, req):
            name = flag_value(x.argv, "--extra_llm_api_options")
            assert name in x.files and "/" not in name
            opts = yaml.safe_load(x.files[name])
            assert adapter.validate_options(x.files[name]) == []
            assert opts["enable_chunked_prefill"] is cand.chunked_prefill
            assert opts["kv_cache_config"]["dtype"] == cand.kv_cache_dtype
            assert opts["kv_cache_config"]["free_gpu_memory_fraction"] == 0.85
            assert opts["kv_cache_config"]["enable_block_reuse"] is cand.enable_prefix_caching
        assert len({n for x in render_all(adapter, cand, req) for n in x.files}) == cand.replicas
        assert adapter.validate_options("kv_cache_config:\n  not_a_key: 1\n")


class TestTGI(EngineAdapterContract):
    ENGINE = "tgi"
    SUPPORTS_PP = False
    HOST_FLAG = "--hostname"
    KNOBS = {"tp": ("--num-shard",), "max_num_seqs": ("--max-batch-size",),
             "admission": ("--max-concurrent-requests",),
             "max_num_batched_tokens": ("--max-batch-prefill-tokens",), "max_model_len": ("--max-total-tokens",),
             "max_input": ("--max-input-tokens",), "model": ("--model-id",)}
    METRICS_TEXT = """# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 3
tgi_queue_size 2
tgi_batch_current_max_tokens 1000
tgi_batch_max_total_tokens 4000
tgi_request_input_length_bucket{le="1000"} 4
tgi_request_input_length_sum 1000
tgi_request_input_length_count 4
tgi_request_generated_tokens_sum 500
tgi_request_generated_tokens_count 4
"""

    def test_values(self, adapter):
        req = make_request("tgi")
        a = render_all(adapter, CANDIDATES[1], req)[0]
        argv = a.argv
        assert argv[:3] == ["text-generation-launcher", "--model-id", "meta-llama/Llama-3.1-8B"]
        assert flag_value(argv, "--quantize") == "fp8" and "--dtype" not in argv  # --dtype excludes --quantize
        assert flag_value(argv, "--kv-cache-dtype") == "fp8_e4m3fn"
        assert flag_value(argv, "--max-total-tokens") == "4096" and flag_value(argv, "--max-input-tokens") == "4095"
        assert flag_value(argv, "--max-batch-prefill-tokens") == "16384"
        assert flag_value(argv, "--max-concurrent-requests") == "512"  # 4 x max_num_seqs 128
        assert a.env["TGI_WIGGLE_ROOM"] == "0.85" and a.env["PREFIX_CACHING"] == "0"
        assert "--max-batch-total-tokens" not in argv  # ignored by TGI for flash-attention models
        on = render_all(adapter, CANDIDATES[0], req)[0]
        assert flag_value(on.argv, "--dtype") == "bfloat16" and "--quantize" not in on.argv
        assert "--kv-cache-dtype" not in on.argv and "PREFIX_CACHING" not in on.env
        assert flag_value(on.argv, "--max-concurrent-requests") == "1024"  # 4 x 256
        # pre-quantized checkpoints (awq, gptq, int8) declare their method: no --quantize
        for i in (3, 4):
            assert "--quantize" not in render_all(adapter, CANDIDATES[i], req)[0].argv

    def test_replicas_on_one_host_do_not_collide(self, adapter):
        req = make_request("tgi")
        xs = render_all(adapter, Candidate(tp=2, replicas=4), req)
        for flag in ("--shard-uds-path", "--master-port", "--prometheus-port", "--port"):
            assert len({flag_value(x.argv, flag) for x in xs}) == 4, flag
        ports = {int(flag_value(x.argv, f)) for x in xs for f in ("--master-port", "--prometheus-port", "--port")}
        assert len(ports) == 12

    def test_every_rendered_flag_and_value_in_schema(self, adapter):
        schema = json.loads((SCHEMA_DIR / "tgi-3.3.7.json").read_text())
        assert schema["source"].startswith("github:huggingface/text-generation-inference@") and "v3.3.7" in schema["source"]
        assert {"awq", "gptq", "fp8", "bitsandbytes-nf4", "compressed-tensors"} <= set(schema["flags"]["--quantize"]["choices"])
        for cand in CANDIDATES:
            if cand.pp > 1:
                continue
            for x in render_all(adapter, cand, make_request("tgi")):
                for tok in x.argv[1:]:
                    if tok.startswith("-"):
                        assert tok in schema["flags"], tok
        assert adapter.image == "ghcr.io/huggingface/text-generation-inference:3.3.7"


def test_tgi_schema_extraction_reproduces(tmp_path):
    """scripts/extract_engine_flags.py's static_tgi reads clap fields as clap derive names them (a fixture in
    the launcher's own form; the committed schema came from the v3.3.7 main.rs, whose source is not committed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("extract_engine_flags", ROOT / "scripts" / "extract_engine_flags.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rs = tmp_path / "main.rs"
    rs.write_text('''
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Quantization {
    /// doc
    Awq,
    BitsandbytesNf4,
    #[clap(name = "fp8_e4m3fn")]
    Fp8e4m3fn,
}
#[derive(Parser, Debug)]
struct Args {
    /// The model
    #[clap(default_value = "bigscience/bloom-560m", long, env)]
    model_id: String,
    #[clap(long, env)]
    num_shard: Option<usize>,
    #[clap(long, env, value_enum)]
    quantize: Option<Quantization>,
    #[clap(long, env)]
    sharded: Option<bool>,
    #[clap(long, env)]
    trust_remote_code: bool,
    #[clap(long, env, value_delimiter = ',')]
    cuda_graphs: Option<Vec<usize>>,
    #[clap(default_value = "3000", long, short, env)]
    port: u16,
    #[clap(default_value = "9000", long, short, env)]
    prometheus_port: u16,
    #[clap(default_value = "1.0", long, env)]
    cuda_memory_fraction: f32,
    not_a_flag: usize,
}
''')
    doc = mod.static_tgi(rs)
    f = doc["flags"]
    assert f["--model-id"]["type"] == "str" and doc["defaults"]["--model-id"] == "bigscience/bloom-560m"
    assert f["--num-shard"]["type"] == "int" and f["--cuda-memory-fraction"]["type"] == "float"
    assert f["--quantize"]["choices"] == ["awq", "bitsandbytes-nf4", "fp8_e4m3fn"]
    assert f["--sharded"]["choices"] == ["false", "true"] and f["--trust-remote-code"]["takes_value"] is False
    assert f["--cuda-graphs"]["type"] == "list[int]" and "--not-a-flag" not in f
    assert f["-p"] == f["--port"] and doc["short_conflicts"] == ["-p (prometheus_port)"]
    assert doc["env"]["--num-shard"] == "NUM_SHARD"


# ---------------------------------------------------------------------------------------------- base helpers
def test_get_adapter_unknown():
    with pytest.raises(UnknownName, match="vllm"):
        get_adapter("vllmm")


def test_engine_versions():
    """engine.version picks the adapter; a version with no schema is one sentence naming those with one."""
    assert get_adapter("vllm").version == "0.33.0"  # the default: the newest version with a schema
    assert get_adapter("vllm", "0.26.0").version == "0.26.0"  # the version measured on GPUs
    assert get_adapter("vllm", "0.26.0") is get_adapter("vllm", "0.26.0")
    with pytest.raises(ConfigError, match=r"^vllm 9\.9\.9 has no flag schema .* 0\.26\.0 or 0\.33\.0 ") as e:
        get_adapter("vllm", "9.9.9")
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")
    with pytest.raises(ConfigError, match="0.5.23"):
        get_adapter("sglang", "0.6.0")
    # `engine.version=0.26` reaches the config as a float: the answer names the versions, not a type
    with pytest.raises(ConfigError, match=r"^vllm 0\.26 has no flag schema .* 0\.26\.0 or 0\.33\.0 "):
        get_adapter("vllm", make_request(version=0.26).engine.version)
    # An adapter never renders another version's request silently.
    with pytest.raises(ValueError, match="0.26.0"):
        get_adapter("vllm").render(Candidate(), make_request(version="0.26.0"), replica=0, gpus=[0], port=8000)


def _guard(version: str, slo: SLO, cand: Candidate = Candidate(), **engine) -> int | None:
    req = make_request(version=version, slo=slo)
    if engine:
        req = req.model_copy(update={"engine": req.engine.model_copy(update=engine)})
    argv = get_adapter("vllm", version).render(cand, req, replica=0, gpus=[0], port=8000).argv
    v = flag_value(argv, "--max-num-queued-tokens")
    return None if v is None else int(v)


def test_ttft_guard_for_033():
    """0.33.0 gets --max-num-queued-tokens = TTFT target x the planner's prefill tokens/s; 0.26.0 has no such
    flag; no TTFT target or engine.ttft_guard=false: none."""
    from serveplan.planner.estimate import Scorer

    slo = SLO(ttft_p99_ms=2000, tpot_p99_ms=100)
    assert _guard("0.26.0", slo) is None
    limit = _guard("0.33.0", slo)
    cand, req = Candidate(), make_request(version="0.33.0", slo=slo)
    b, prompt = cand.max_num_batched_tokens, req.traffic.input_len.mean
    step_s = Scorer(req).step_model(cand).step_ms(0, 0, b, b * prompt / 2, b / prompt) / 1000
    assert limit == int(2.0 * b / step_s)
    assert 5_000 < limit < 500_000  # an 8B model on an H100 prefills some 10^4 tokens/s
    assert _guard("0.33.0", SLO(ttft_p99_ms=1000)) == pytest.approx(limit / 2, abs=1)
    assert _guard("0.33.0", SLO(ttft_p50_ms=500, ttft_p99_ms=2000)) == limit  # the highest percentile's limit
    assert _guard("0.33.0", SLO(tpot_p99_ms=100)) is None
    assert _guard("0.33.0", slo, ttft_guard=False) is None


def test_assign_gpus_and_ports():
    assert assign_gpus(Candidate(tp=2, replicas=3), 8) == [[0, 1], [2, 3], [4, 5]]
    assert assign_gpus(Candidate(tp=2, pp=2, replicas=2), 8) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ConfigError):
        assign_gpus(Candidate(tp=8, replicas=2), 8)
    assert [replica_port(8000, i) for i in range(3)] == [8000, 8001, 8002]


def test_parse_prometheus():
    text = 'a_total{x="1"} 2\na_total{x="2"} 3\n# comment\nb NaN\nc 1e3\n'
    assert parse_prometheus(text) == {"a_total": 5.0, "c": 1000.0}


def test_adapters_do_not_import_each_other():
    engines = ROOT / "serveplan" / "render" / "engines"
    for name in ("vllm", "sglang", "trtllm", "tgi"):
        src = (engines / f"{name}.py").read_text()
        others = {"vllm", "sglang", "trtllm", "tgi"} - {name}
        for o in others:
            assert f"engines.{o}" not in src and f"engines import {o}" not in src


def test_schemas_well_formed():
    for path in SCHEMA_DIR.glob("*.json"):
        doc = json.loads(path.read_text())
        assert path.stem == f"{doc['engine']}-{doc['version']}"
        assert doc["source"] and doc["extracted_with"]
        for flag, spec in doc["flags"].items():
            assert flag.startswith("-")
            assert set(spec) >= {"type", "choices", "nargs", "takes_value"}


def test_vllm_flags_follow_the_checkpoint(tmp_path):
    """An unquantized folder planned at fp8 is quantized at load (--quantization fp8); a quantized folder
    declares its method (no flag: vLLM refuses an explicit one that differs); an unquantized folder named for
    an awq plan is refused, since it would serve bf16."""
    import json

    from serveplan.errors import ConfigError
    from serveplan.render.engines.base import get_adapter
    from serveplan.planner.checkpoints import user_checkpoint
    from serveplan.planner.config import build_request
    from serveplan.planner.spec import Candidate

    req = build_request(model="llama-8b", gpus="1xH100")
    ad = get_adapter("vllm")
    plain, quant = tmp_path / "plain", tmp_path / "quant"
    plain.mkdir(), quant.mkdir()
    (plain / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (quant / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq", "bits": 4}}))
    fp8 = Candidate(weight_dtype="fp8", max_model_len=4096)
    online = fp8.model_copy(update={"checkpoint": user_checkpoint(str(plain), "fp8", req.model)})
    argv = ad.render(online, req, replica=0, gpus=[0], port=8000).argv
    assert flag_value(argv, "--quantization") == "fp8" and argv[2] == str(plain.resolve())
    awq = Candidate(weight_dtype="awq", max_model_len=4096)
    awq = awq.model_copy(update={"checkpoint": user_checkpoint(str(quant), "awq", req.model)})
    argv = ad.render(awq, req, replica=0, gpus=[0], port=8000).argv
    assert "--quantization" not in argv and ad.validate(argv) == []
    with pytest.raises(ConfigError, match="not quantized"):
        user_checkpoint(str(plain), "awq", req.model)
    with pytest.raises(ConfigError, match="awq-quantized"):
        user_checkpoint(str(quant), "int8", req.model)


@pytest.mark.parametrize("tp,pp,kv", [(1, 1, "auto"), (2, 1, "fp8"), (1, 2, "fp8")])
def test_vllm_pins_the_planned_kv_cache(tp, pp, kv):
    """vLLM gets the plan's KV cache as --kv-cache-memory-bytes: divided by the bytes of one block across the
    layers of a GPU (what vLLM does), it gives exactly the plan's KV tokens, so a first boot's compile cannot
    shrink it; pin_kv_cache=false leaves vLLM's own profiling."""
    from serveplan.planner.memory import kv_bytes_per_token_per_gpu, memory_breakdown

    req = make_request()
    cand = Candidate(tp=tp, pp=pp, kv_cache_dtype=kv, max_model_len=8192)
    mem = memory_breakdown(req.model, req.inventory.gpu, req.engine, cand, req.traffic)
    argv = get_adapter("vllm").render(cand, req, replica=0, gpus=list(range(tp * pp)), port=8000).argv
    pinned = int(flag_value(argv, "--kv-cache-memory-bytes"))
    per_token = kv_bytes_per_token_per_gpu(req.model, tp, pp, kv)
    block = req.engine.kv_block_size
    assert pinned // int(per_token * block) * block == mem.kv_tokens > 0
    assert pinned <= mem.kv_cache_gb * 1e9  # whole blocks, never more than the budget left for the cache
    assert get_adapter("vllm").validate(argv) == []
    unpinned = req.model_copy(update={"engine": req.engine.model_copy(update={"pin_kv_cache": False})})
    argv = get_adapter("vllm").render(cand, unpinned, replica=0, gpus=list(range(tp * pp)), port=8000).argv
    assert "--kv-cache-memory-bytes" not in argv


@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
@pytest.mark.parametrize("field,flag,value", [("max_cudagraph_capture_size", "--max-cudagraph-capture-size", 2048),
                                              ("api_server_count", "--api-server-count", 2)])
def test_vllm_renders_a_front_end_or_graph_setting_only_when_set(version, field, flag, value):
    # the defaults (no graph size, one API server) leave vLLM's own default in place: no flag
    req = make_request("vllm", version=version)
    ad = get_adapter("vllm", version)
    plain = ad.render(Candidate(max_model_len=8192), req, replica=0, gpus=[0], port=8000).argv
    assert flag not in plain
    argv = ad.render(Candidate(max_model_len=8192, **{field: value}), req, replica=0, gpus=[0], port=8000).argv
    assert flag_value(argv, flag) == str(value) and ad.validate(argv) == []


def test_cudagraph_capture_size_is_a_vllm_setting():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="vLLM setting"):
        Candidate(engine="sglang", max_cudagraph_capture_size=1024)


def test_api_server_count_is_a_vllm_setting():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="vLLM setting"):
        Candidate(engine="sglang", api_server_count=2)
    Candidate(engine="sglang", api_server_count=1)  # the default: one front end, whatever the engine
    with pytest.raises(ValidationError, match="vLLM setting"):
        EngineConfig(name="trtllm", version=get_adapter("trtllm").version, api_server_count=2)


def test_tgi_plans_without_pipeline_parallelism():
    """engine=tgi: the search proposes PP1 only (supports_pp: false), the winner renders and validates, and
    its TGI_WIGGLE_ROOM is the gpu_memory_utilization the memory model used (TGI's own 0.90 by default)."""
    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request

    req = build_request(model="llama-70b", gpus="4xH100", engine="tgi", overrides=["search.n_trials=40"])
    assert req.engine.supports_pp is False and req.engine.gpu_memory_utilization == 0.90
    p = plan(req)
    assert p.ranked and all(e.config.pp == 1 and e.config.engine == "tgi" for e in p.ranked)
    w = p.winner.config
    x = get_adapter("tgi").render(w, req, replica=0, gpus=list(range(w.tp)), port=8000)
    assert get_adapter("tgi").validate(x.argv) == [] and x.env["TGI_WIGGLE_ROOM"] == "0.9"
