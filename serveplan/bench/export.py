"""A bench traffic profile as a Locust file and a k6 script, for teams that run those tools.

`export_profile` resolves the load exactly as `bench` would (`--rate`, `--concurrency` or the traffic's own
load; the arrival process) and draws the request lengths with bench's own sampler and seed: the files
embed the first `n_samples` (input, output) pairs that `bench --seed S` would send, in order. The files
import nothing from serveplan, so they can be copied to a load-generation host. `render_locustfile` and
`render_k6` are pure (profile in, text out); the CLI writes them (`bench --export-locust DIR`).

What each tool cannot replay the way bench does is stated in the files themselves: Locust users are closed
loops (open-loop arrivals are a schedule the users share, see LOCUST_ARRIVAL_NOTE), and k6 neither streams
an HTTP body nor has a Poisson executor (its TTFT is the time to the response's first byte, and Poisson is a
thinned constant rate).
"""

from __future__ import annotations

import json
import math
import random
import textwrap
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serveplan.bench.loadgen import _resolve_args
from serveplan.bench.prompts import _VOCAB, _PromptBuilder, _sample_len
from serveplan.bench.results import Endpoint
from serveplan.bench.sse import _base_url
from serveplan.errors import ConfigError
from serveplan.planner.spec import Traffic

DEFAULT_DURATION_S = 60.0
DEFAULT_SAMPLES = 2000
# Open loop: Locust users (k6 VUs) needed = arrival rate x time a request is in flight (Little's law), with
# headroom. The server's latency is not known when exporting, so a request is assumed to take
# ASSUMED_TTFT_S + output tokens / ASSUMED_STREAM_TOK_S (a slow stream) and twice that many users are made.
# Users beyond those needed only wait; too few delay arrivals (the files count and report late starts).
ASSUMED_TTFT_S = 1.0
ASSUMED_STREAM_TOK_S = 20.0
USER_HEADROOM = 2.0
# k6: a Poisson process is approximated by a constant rate THIN times higher of which each tick sends
# with probability 1/THIN (geometric gaps, coefficient of variation sqrt(1 - 1/THIN) = 0.95 vs 1).
K6_THIN = 10

LOCUST_ARRIVAL_NOTE = """\
Arrivals. Locust is closed-loop per user: a user sends a request, waits for the whole response, then sleeps
wait_time before its next one. bench's open loop sends at scheduled times whatever the server's latency. To
replay that, the users of this process share one schedule of arrival times drawn as bench draws them (same
seed; Poisson = exponential gaps at RATE_RPS, constant, or bursty = gamma gaps): a user that is free claims
the next unclaimed arrival time and sleeps until it (`wait_time`). While at least one user is free at each
arrival, every request starts on schedule, so the offered rate is RATE_RPS, not USERS / (latency + wait) as
with constant_throughput or a think time. When all USERS are busy, the next request starts late, as soon as
one finishes: that is bench with `--concurrency USERS` (a cap on requests in flight), and the late starts are
counted and printed at the end. USERS has headroom (see the number below); more users are harmless, they
only wait. Run one Locust process: with --processes or distributed workers each process would replay the
whole schedule (divide RATE_RPS by their number)."""


class LoadProfile(BaseModel):
    """Everything the exported files need: the load bench would run and the lengths it would send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    traffic_name: str = Field(description="The traffic preset or file name, for the files' headers.")
    url: str = Field(description="Server base URL (no /v1 suffix).")
    endpoint: Endpoint = Field(description="completions (/v1/completions) or chat (/v1/chat/completions).")
    model: str | None = Field(description="Served model name sent with each request; None: not sent (the "
                              "server's default model).")
    mode: Literal["open", "closed"] = Field(description="open: arrivals at rate_rps; closed: concurrency "
                                            "clients back to back.")
    arrival: Literal["poisson", "constant", "bursty", "closed"] = Field(description="Arrival process.")
    rate_rps: float | None = Field(description="Open loop: requests/s.")
    concurrency: int | None = Field(description="Closed loop: clients; open loop: cap on requests in "
                                    "flight (None: no cap).")
    burstiness: float = Field(description="Gamma shape of bursty inter-arrival times.")
    users: int = Field(ge=1, description="Locust users / k6 VUs to run.")
    duration_s: float = Field(gt=0, description="How long the run lasts.")
    seed: int = Field(description="bench's seed: lengths, arrivals and prompts.")
    timeout_s: float = Field(gt=0, description="Per-request timeout, s.")
    prefix_share: float = Field(description="Share of each prompt that is a prefix common to all requests.")
    lengths: tuple[tuple[int, int], ...] = Field(description="(input, output) token lengths in bench's "
                                                 "order; cycled when a run sends more.")
    prefix_words: tuple[str, ...] = Field(description="bench's common prefix words (empty without "
                                          "prefix_share).")

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"

    def locust_command(self, locustfile: str) -> str:
        return (f"locust -f {locustfile} --headless -u {self.users} -r {self.users} "
                f"-t {_duration_arg(self.duration_s)} --host {self.url}")

    def k6_command(self, script: str) -> str:
        return f"k6 run {script}"


def _duration_arg(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def open_loop_users(rate_rps: float, mean_output_len: float) -> int:
    """Users that keep an open loop at rate_rps on schedule when a request takes the assumed time."""
    in_flight_s = ASSUMED_TTFT_S + mean_output_len / ASSUMED_STREAM_TOK_S
    return max(2, math.ceil(rate_rps * in_flight_s * USER_HEADROOM))


def sample_lengths(traffic: Traffic, seed: int, n: int) -> list[tuple[int, int]]:
    """The first n (input, output) lengths bench sends with this seed: its own sampler, in its order."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        in_len = _sample_len(traffic.input_len, rng)
        out.append((in_len, _sample_len(traffic.output_len, rng)))
    return out


def export_profile(traffic: Traffic, url: str, *, model: str | None = None, rate_rps: float | None = None,
                   concurrency: int | None = None, duration_s: float | None = None, seed: int = 0,
                   timeout_s: float = 600.0, endpoint: Endpoint = "completions",
                   n_samples: int = DEFAULT_SAMPLES) -> LoadProfile:
    """The load `bench --url URL --traffic T [--rate R] [--concurrency N] --seed S` would run, as data."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {url}: write the scheme too, e.g. http://{url}.")
    if n_samples < 1:
        raise ConfigError(f"n_samples must be at least 1, got {n_samples}.")
    duration = DEFAULT_DURATION_S if duration_s is None else duration_s
    args = _resolve_args([url], traffic, model, None, duration, rate_rps, concurrency, seed, timeout_s,
                         None, endpoint)
    lengths = sample_lengths(traffic, seed, n_samples)
    if args.mode == "closed":
        users = args.concurrency or 1
    elif args.concurrency:  # a cap on requests in flight: exactly that many users
        users = args.concurrency
    else:
        users = open_loop_users(args.rate_rps or 1.0, sum(o for _, o in lengths) / len(lengths))
    prefix: tuple[str, ...] = ()
    if traffic.prefix_share > 0:
        need = min(int(max(i for i, _ in lengths) * traffic.prefix_share), 4096)
        prefix = tuple(_PromptBuilder(None, seed, traffic.prefix_share)._prefix_words[:need])
    return LoadProfile(traffic_name=traffic.name, url=_base_url(url), endpoint=endpoint, model=model,
                       mode=args.mode, arrival=args.arrival, rate_rps=args.rate_rps,
                       concurrency=args.concurrency, burstiness=traffic.burstiness, users=users,
                       duration_s=duration, seed=seed, timeout_s=timeout_s, prefix_share=traffic.prefix_share,
                       lengths=tuple(lengths), prefix_words=prefix)


def _fill(template: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        template = template.replace(f"@@{k}@@", v)
    if "@@" in template:
        raise AssertionError(f"unfilled placeholder in export template near "
                             f"{template[template.index('@@'):][:40]!r}")
    return template


def _lengths_literal(lengths: tuple[tuple[int, int], ...], per_line: int = 12) -> str:
    rows = [", ".join(f"[{i}, {o}]" for i, o in lengths[k:k + per_line]) for k in range(0, len(lengths), per_line)]
    return "[\n" + ",\n".join("    " + r for r in rows) + ",\n]"


def _words_literal(words: tuple[str, ...] | list[str], per_line: int = 16) -> str:
    if not words:
        return "[]"
    rows = [", ".join(json.dumps(w) for w in words[k:k + per_line]) for k in range(0, len(words), per_line)]
    return "[\n" + ",\n".join("    " + r for r in rows) + ",\n]"


def _describe(p: LoadProfile) -> str:
    if p.mode == "closed":
        load = f"closed loop, {p.concurrency} concurrent clients"
    else:
        load = f"open loop, {p.arrival} arrivals at {p.rate_rps:g} req/s"
        if p.concurrency:
            load += f", at most {p.concurrency} in flight"
    mean_in = sum(i for i, _ in p.lengths) / len(p.lengths)
    mean_out = sum(o for _, o in p.lengths) / len(p.lengths)
    return (f"traffic '{p.traffic_name}', {load}; {len(p.lengths)} sampled lengths (seed {p.seed}): "
            f"input mean {mean_in:.0f}, output mean {mean_out:.0f} tokens")


def render_locustfile(p: LoadProfile) -> str:
    """A standalone locustfile replaying the profile (Python, needs only locust)."""
    return _fill(_LOCUST_TEMPLATE, {
        "DESCRIBE": _describe(p),
        "COMMAND": p.locust_command("locustfile.py"),
        "ARRIVAL_NOTE": LOCUST_ARRIVAL_NOTE,
        "USERS_NOTE": (f"USERS = concurrency ({p.users})" if p.mode == "closed" or p.concurrency else
                       f"USERS = {p.users}: rate x (assumed {ASSUMED_TTFT_S:g} s to the first token + mean "
                       f"output / {ASSUMED_STREAM_TOK_S:g} tok/s) x {USER_HEADROOM:g} headroom"),
        "URL": repr(p.url), "PATH": repr(p.path), "PATH_TEXT": p.path, "CHAT": repr(p.endpoint == "chat"),
        "MODEL": repr(p.model),
        "MODE": repr(p.mode), "ARRIVAL": repr(p.arrival), "RATE": repr(p.rate_rps), "USERS": str(p.users),
        "BURSTINESS": repr(p.burstiness), "SEED": repr(p.seed), "TIMEOUT": repr(p.timeout_s),
        "PREFIX_SHARE": repr(p.prefix_share), "LENGTHS": _lengths_literal(p.lengths),
        "VOCAB": _words_literal(list(_VOCAB)),
    })


def render_k6(p: LoadProfile) -> str:
    """A k6 script replaying the profile (JavaScript, k6 only)."""
    if p.mode == "closed":
        scenario = (f"{{\n      executor: 'constant-vus',\n      vus: {p.users},\n"
                    f"      duration: '{_duration_arg(p.duration_s)}',\n    }}")
        arrival_note = ("closed loop: CONCURRENCY VUs, each sending its next request as soon as the previous "
                        "one ended (bench's closed loop).")
    else:
        thin = K6_THIN if p.arrival in ("poisson", "bursty") else 1
        ticks_per_1000s = max(1, round((p.rate_rps or 1.0) * thin * 1000))
        max_vus = p.concurrency or p.users * 2
        scenario = (f"{{\n      executor: 'constant-arrival-rate',\n      rate: {ticks_per_1000s},\n"
                    f"      timeUnit: '1000s',\n      duration: '{_duration_arg(p.duration_s)}',\n"
                    f"      preAllocatedVUs: {min(p.users, max_vus)},\n      maxVUs: {max_vus},\n    }}")
        arrival_note = (
            "open loop: the constant-arrival-rate executor starts iterations at evenly spaced times whatever "
            "the server's latency. k6 has no Poisson executor, so for poisson (and bursty, which k6 cannot "
            f"make: it runs as poisson here) the rate is {thin}x RATE_RPS and each iteration sends with "
            f"probability 1/{thin}: geometric gaps with mean 1/RATE_RPS, nearly as variable as exponential "
            "ones (skipped iterations count in k6's `iterations`). When all maxVUs are busy k6 drops the "
            "arrival (dropped_iterations) where bench would queue it." if thin > 1 else
            "open loop: the constant-arrival-rate executor starts iterations at evenly spaced times (constant "
            "arrivals) whatever the server's latency. When all maxVUs are busy k6 drops the arrival "
            "(dropped_iterations) where bench would queue it.")
    return _fill(_K6_TEMPLATE, {
        "DESCRIBE": _describe(p), "COMMAND": p.k6_command("k6.js"),
        "ARRIVAL_NOTE": "\n// ".join(textwrap.wrap(arrival_note, 105)),
        "URL": json.dumps(p.url), "PATH": json.dumps(p.path), "CHAT": json.dumps(p.endpoint == "chat"),
        "MODEL": json.dumps(p.model), "MODE": json.dumps(p.mode), "ARRIVAL": json.dumps(p.arrival),
        "RATE": json.dumps(p.rate_rps), "CONCURRENCY": json.dumps(p.concurrency), "USERS": str(p.users),
        "THIN": str(K6_THIN if p.mode == "open" and p.arrival in ("poisson", "bursty") else 1),
        "TIMEOUT": json.dumps(f"{_duration_arg(p.timeout_s)}"), "SCENARIO": scenario,
        "PREFIX_SHARE": json.dumps(p.prefix_share), "LENGTHS": _lengths_literal(p.lengths),
        "VOCAB": _words_literal(list(_VOCAB)), "PREFIX_WORDS": _words_literal(p.prefix_words),
    })


def export_files(p: LoadProfile) -> dict[str, str]:
    """File name -> text of everything `--export-locust DIR` writes."""
    return {"locustfile.py": render_locustfile(p), "k6.js": render_k6(p)}


# ------------------------------------------------------------------------------------------- templates
_LOCUST_TEMPLATE = '''\
"""Locust replay of a serveplan bench load, exported by `bench --export-locust`. Standalone: needs only locust.

@@DESCRIBE@@.

    @@COMMAND@@

Requests: the same as serveplan's bench sends with this seed. LENGTHS are the (input, output) token lengths
bench draws from the traffic's distributions, in its order (cycled when more are sent); each prompt is that
many random common words (about one token per word for Llama-3 / GPT-style BPE, as bench without
--tokenizer), a PREFIX_SHARE of it the common prefix bench uses; max_tokens = min_tokens = the output length
with ignore_eos, streamed (stream=true, usage in the last chunk).

@@ARRIVAL_NOTE@@
@@USERS_NOTE@@.

Closed loop (MODE == "closed"): USERS users, each sending its next request as soon as the previous one ended
(wait_time 0), as bench's closed loop.

Statistics: the "POST @@PATH_TEXT@@" row is the whole streamed request (E2E: the body is read in the
task, and its response time is set to the end of the stream); "ttft" (type SSE) the time to the first streamed token;
"tpot" (type SSE) the mean time per output token after the first. A request that streams no token fails.
"""

import itertools
import json
import random
import time

from locust import HttpUser, events, task

HOST = @@URL@@
PATH = @@PATH@@
CHAT = @@CHAT@@
MODEL = @@MODEL@@
MODE = @@MODE@@
ARRIVAL = @@ARRIVAL@@
RATE_RPS = @@RATE@@
USERS = @@USERS@@
BURSTINESS = @@BURSTINESS@@
SEED = @@SEED@@
TIMEOUT_S = @@TIMEOUT@@
PREFIX_SHARE = @@PREFIX_SHARE@@
LATE_S = 0.05  # a request starting this much after its arrival time counts as late
# (input tokens, output tokens), in the order bench sends them
LENGTHS = @@LENGTHS@@
VOCAB = @@VOCAB@@

_prompt_rng = random.Random(f"{SEED}-prompts")  # bench's prompt generator, same seed and draw order
_PREFIX = [_prompt_rng.choice(VOCAB) for _ in range(4096)] if PREFIX_SHARE > 0 else []
_state = {}


def build_prompt(n_tokens):
    """n_tokens words, the first PREFIX_SHARE of them the prefix common to every request (as bench)."""
    n_prefix = min(int(n_tokens * PREFIX_SHARE), len(_PREFIX))
    return " ".join(_PREFIX[:n_prefix] + [_prompt_rng.choice(VOCAB) for _ in range(n_tokens - n_prefix)])


@events.test_start.add_listener
def _reset(**_kw):
    arrivals = random.Random(f"{SEED}-arrivals")  # bench's arrival generator
    _state.update(index=itertools.count(), t0=None, next_s=0.0, arrivals=arrivals, sent=0, late=0)


def _gap():
    rng = _state["arrivals"]
    if ARRIVAL == "constant":
        return 1.0 / RATE_RPS
    if ARRIVAL == "bursty":
        return rng.gammavariate(BURSTINESS, 1.0 / (RATE_RPS * BURSTINESS))
    return rng.expovariate(RATE_RPS)


def open_loop_wait(user):
    """wait_time of the open loop: claim the next arrival of the shared schedule, sleep until it."""
    now = time.perf_counter()
    if _state["t0"] is None:
        _state["t0"] = now
    due = _state["t0"] + _state["next_s"]
    _state["next_s"] += _gap()
    _state["sent"] += 1
    if now - due > LATE_S:
        _state["late"] += 1
    return max(0.0, due - now)


def closed_loop_wait(user):
    return 0.0


@events.test_stop.add_listener
def _report_late(**_kw):
    if MODE == "open" and _state.get("late"):
        print(f"note: {_state['late']} of {_state['sent']} requests started more than {LATE_S * 1000:.0f} ms "
              f"after their arrival time: all users were busy (run with more users: -u; {USERS} were suggested).")


def _fire(name, ms, context):
    events.request.fire(request_type="SSE", name=name, response_time=ms, response_length=0,
                        exception=None, context=context)


class ServeplanTraffic(HttpUser):
    host = HOST
    wait_time = open_loop_wait if MODE == "open" else closed_loop_wait

    def on_start(self):
        if not _state:
            _reset()
        if MODE == "open":  # the first request waits for its arrival too
            time.sleep(self.wait_time())

    @task
    def request(self):
        in_len, out_len = LENGTHS[next(_state["index"]) % len(LENGTHS)]
        prompt = build_prompt(in_len)
        body = {"max_tokens": out_len, "min_tokens": out_len, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": 0.0}
        if MODEL:
            body["model"] = MODEL
        if CHAT:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        t0 = time.perf_counter()
        first = last = None
        tokens, usage, error = 0, None, None
        with self.client.post(PATH, json=body, stream=True, catch_response=True, name=PATH,
                              timeout=TIMEOUT_S) as resp:
            try:
                if resp.status_code != 200:
                    error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                else:
                    for line in resp.iter_lines():
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            break
                        chunk = json.loads(data)
                        if chunk.get("error"):
                            error = f"stream error: {chunk['error']}"
                            break
                        usage = chunk.get("usage") or usage
                        for choice in chunk.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content") if CHAT else choice.get("text")
                            if text:
                                last = time.perf_counter()
                                first = first or last
                                tokens += 1
            except Exception as e:  # a dropped connection or a malformed stream fails this request only
                error = f"{type(e).__name__}: {e}"
            end = time.perf_counter()
            resp.request_meta["response_time"] = (end - t0) * 1000  # E2E, not time to the headers
            if error is None and first is None:
                error = "no token streamed"
            if error is not None:
                resp.failure(error)
                return
            resp.success()
        n_out = (usage or {}).get("completion_tokens") or tokens
        context = self.context()
        _fire("ttft", (first - t0) * 1000, context)
        if n_out > 1:
            _fire("tpot", (last - first) * 1000 / (n_out - 1), context)

'''

_K6_TEMPLATE = '''\
// k6 replay of a serveplan bench load, exported by `bench --export-locust`. Standalone: needs only k6.
//
// @@DESCRIBE@@.
//
//     @@COMMAND@@        (BASE_URL=http://host:port k6 run k6.js for another server)
//
// Requests: the same as serveplan's bench sends with this seed. LENGTHS are the (input, output) token lengths
// bench draws from the traffic's distributions (used by iteration number, cycled); each prompt is that many
// random common words (about one token per word), a PREFIX_SHARE of it bench's common prefix; max_tokens =
// min_tokens = the output length with ignore_eos, stream=true.
//
// Arrivals, @@ARRIVAL_NOTE@@
//
// TTFT: k6's HTTP client reads the whole response before returning and cannot time the chunks of a stream,
// so the `ttft_ttfb` trend is the time to the response's first byte (timings.waiting) with stream=true. On
// servers that send the response headers only with the first token it equals TTFT; vLLM and SGLang send the
// headers of a stream as soon as the request is accepted, before prefill, so there it is a lower bound on
// TTFT (queueing and tokenization, not prefill). http_req_duration is E2E. For real TTFT and TPOT use the
// locustfile beside this script, serveplan's bench, or an SSE extension of k6 (xk6-sse).

import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || @@URL@@).replace(/\\/+$/, '');
const PATH = @@PATH@@;
const CHAT = @@CHAT@@;
const MODEL = @@MODEL@@;
const MODE = @@MODE@@;
const ARRIVAL = @@ARRIVAL@@;
const RATE_RPS = @@RATE@@;
const CONCURRENCY = @@CONCURRENCY@@;
const USERS = @@USERS@@;
const THIN = @@THIN@@;  // open-loop ticks per request: 1 = constant arrivals, >1 = thinned to Poisson
const TIMEOUT = @@TIMEOUT@@;
const PREFIX_SHARE = @@PREFIX_SHARE@@;
// (input tokens, output tokens), in the order bench sends them
const LENGTHS = @@LENGTHS@@;
const VOCAB = @@VOCAB@@;
const PREFIX_WORDS = @@PREFIX_WORDS@@;

const ttft = new Trend('ttft_ttfb', true);
const outputTokens = new Counter('output_tokens');

export const options = {
  scenarios: {
    replay: @@SCENARIO@@,
  },
};

function buildPrompt(n) {
  const nPrefix = Math.min(Math.floor(n * PREFIX_SHARE), PREFIX_WORDS.length);
  const words = PREFIX_WORDS.slice(0, nPrefix);
  for (let i = nPrefix; i < n; i++) {
    words.push(VOCAB[Math.floor(Math.random() * VOCAB.length)]);
  }
  return words.join(' ');
}

export default function () {
  if (THIN > 1 && Math.random() >= 1 / THIN) {
    return;  // a tick that sends nothing: thinning a constant rate into a Poisson process
  }
  const [inLen, outLen] = LENGTHS[exec.scenario.iterationInTest % LENGTHS.length];
  const prompt = buildPrompt(inLen);
  const body = {
    max_tokens: outLen, min_tokens: outLen, ignore_eos: true, stream: true,
    stream_options: { include_usage: true }, temperature: 0.0,
  };
  if (MODEL) {
    body.model = MODEL;
  }
  if (CHAT) {
    body.messages = [{ role: 'user', content: prompt }];
  } else {
    body.prompt = prompt;
  }
  const res = http.post(BASE_URL + PATH, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json' },
    timeout: TIMEOUT,
    tags: { name: 'POST ' + PATH },
  });
  const ok = check(res, {
    'status 200': (r) => r.status === 200,
    'stream ended': (r) => typeof r.body === 'string' && r.body.indexOf('[DONE]') >= 0,
  });
  if (!ok) {
    return;
  }
  ttft.add(res.timings.waiting);
  const m = res.body.match(/"completion_tokens":\\s*(\\d+)/g);
  if (m) {
    outputTokens.add(parseInt(m[m.length - 1].replace(/\\D/g, ''), 10));
  }
}
'''
