"""The simulated engine's counters (running / waiting requests, KV-cache tokens, token totals, latency
histograms) and their Prometheus text under vLLM's metric names."""

from __future__ import annotations

from dataclasses import dataclass, field


class Histogram:
    BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)

    def __init__(self) -> None:
        self.counts = [0] * len(self.BUCKETS)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.sum += v
        self.count += 1
        for i, b in enumerate(self.BUCKETS):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str, labels: str, help_: str) -> list[str]:
        out = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for b, c in zip(self.BUCKETS, self.counts):
            out.append(f'{name}_bucket{{{labels},le="{b}"}} {float(c)}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(self.count)}')
        out.append(f"{name}_count{{{labels}}} {float(self.count)}")
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        return out


@dataclass
class Stats:
    running: int = 0
    waiting: int = 0
    kv_tokens: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})
    ttft: Histogram = field(default_factory=Histogram)
    e2e: Histogram = field(default_factory=Histogram)
    itl: Histogram = field(default_factory=Histogram)


def prometheus_text(s: Stats, model_name: str, kv_capacity: int) -> str:
    """GET /metrics: the gauges, counters and histograms a vLLM 0.26 server exports, for one engine."""
    lb = f'engine="0",model_name="{model_name}"'
    lines = [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{lb}}} {float(s.running)}",
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{lb}}} {float(s.waiting)}",
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{lb}}} {min(1.0, s.kv_tokens / kv_capacity) if kv_capacity else 0.0}",
        "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
        "# TYPE vllm:num_preemptions_total counter",
        f"vllm:num_preemptions_total{{{lb}}} 0.0",
        "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_total counter",
        f"vllm:prompt_tokens_total{{{lb}}} {float(s.prompt_tokens)}",
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{lb}}} {float(s.generation_tokens)}",
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success_total counter",
    ]
    for reason, n in s.finished.items():
        lines.append(f'vllm:request_success_total{{engine="0",finished_reason="{reason}",'
                     f'model_name="{model_name}"}} {float(n)}')
    lines += s.ttft.render("vllm:time_to_first_token_seconds", lb, "Histogram of time to first token in seconds.")
    lines += s.itl.render("vllm:inter_token_latency_seconds", lb, "Histogram of inter-token latency in seconds.")
    lines += s.e2e.render("vllm:e2e_request_latency_seconds", lb, "Histogram of e2e request latency in seconds.")
    return "\n".join(lines) + "\n"
