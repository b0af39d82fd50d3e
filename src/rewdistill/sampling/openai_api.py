"""Sampling from any OpenAI-compatible server (`/v1/chat/completions` or `/v1/completions`).

Requests run `concurrency` at a time; a failed request (HTTP 429 / 5xx, refused connection, timeout) is retried
with exponential backoff. Every finished request is appended at once to a cache file (one JSON line, keyed by
everything that defines the request), so a crash or Ctrl-C loses nothing and a rerun only asks for what is
missing. The API key is read from the environment variable named in the config and sent only in the
Authorization header: it is never logged, printed or written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from rewdistill.io import append_jsonl
from rewdistill.sampling.hf import Generation

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
logger = logging.getLogger("rewdistill")


class BackendError(Exception):
    """A sampling backend failed in a way the user must fix (message says what and what to do)."""


def api_key(env_name: str | None) -> str | None:
    """The key from environment variable `env_name` (None when no name is configured)."""
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise BackendError(f"openai.api_key_env names {env_name!r} but that environment variable is not set")
    return key


def request_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def read_cache(path: Path) -> dict[str, dict]:
    """Finished requests by key; a torn line (a crash mid-write, ended by the next `append_jsonl`) is dropped."""
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[row["key"]] = row
    return out


class OpenAISampler:
    def __init__(self, cfg, model: str, cache_path: Path | None):
        self.cfg, self.model, self.cache_path = cfg, cfg.model or model, cache_path
        self.key = api_key(cfg.api_key_env)
        self.ignores_n = False  # learnt from the first reply to a request with n > 1
        self.url = cfg.base_url.rstrip("/") + ("/chat/completions" if cfg.endpoint == "chat" else "/completions")

    # -- one request --------------------------------------------------------------------------------------------
    def _body(self, prompt: str, temperature: float, n: int, max_new_tokens: int, seed: int) -> dict:
        body = {"model": self.model, "n": n, "temperature": temperature, "max_tokens": max_new_tokens, "seed": seed}
        if self.cfg.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        return body

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        delay, last = self.cfg.backoff_s, ""
        for attempt in range(self.cfg.max_retries + 1):
            req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                if e.code not in RETRY_STATUS:
                    hint = " (check the key in openai.api_key_env)" if e.code in (401, 403) else ""
                    raise BackendError(f"{self.url}: HTTP {e.code} {e.reason}{hint}") from None
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = str(getattr(e, "reason", e))
            if attempt < self.cfg.max_retries:
                time.sleep(min(delay, 60.0))
                delay *= 2
        raise BackendError(f"{self.url}: request failed after {self.cfg.max_retries + 1} tries ({last}); finished "
                           "requests are saved, rerun to continue")

    def _texts(self, reply: dict) -> tuple[list[str], list[bool]]:
        texts, finished = [], []
        for ch in sorted(reply.get("choices", []), key=lambda c: c.get("index", 0)):
            text = ch["message"]["content"] if self.cfg.endpoint == "chat" else ch["text"]
            texts.append(text or "")
            finished.append(ch.get("finish_reason") != "length")
        return texts, finished

    def token_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Each response token's log-prob given what precedes it, from the completions endpoint: the prompt goes as
        token ids with `echo` and `logprobs`, so the server scores our tokens instead of re-tokenising text (vLLM's
        server supports this). Not cached: on-policy rollouts never repeat. One generated token is discarded."""
        if self.cfg.endpoint != "completions":
            raise BackendError("teacher log-probs need the completions endpoint (echo + logprobs): set "
                               "openai.endpoint completions")
        bodies = [{"model": self.model, "prompt": p + r, "max_tokens": 1, "temperature": 0.0, "echo": True,
                   "logprobs": 0} for p, r in zip(prompts, responses)]
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            replies = list(pool.map(self._post, bodies))
        rows = []
        for reply, p, r in zip(replies, prompts, responses):
            lps = reply["choices"][0]["logprobs"]["token_logprobs"]  # prompt + response (+ the generated token)
            if len(lps) != len(p) + len(r) + 1:  # prompt + response echoed, + the one generated token
                raise BackendError(f"{self.url}: echo returned {len(lps)} log-probs for {len(p) + len(r)} tokens + 1 "
                                   "generated; the server must echo token-id prompts as sent, with logprobs")
            rows.append([float(x) for x in lps[len(p) : len(p) + len(r)]])
        return rows

    # -- many requests ------------------------------------------------------------------------------------------
    def _jobs(self, prompts, temperature, n, max_new_tokens, seed, k) -> list[tuple[int, dict, str]]:
        """(prompt index, body, cache key) of every request: `n` samples per prompt, at most `k` per request."""
        jobs = []
        for i, p in enumerate(prompts):
            for j in range(0, n, k):
                body = self._body(p, temperature, min(k, n - j), max_new_tokens, seed * 1_000_003 + i * 1_009 + j)
                jobs.append((i, body, request_key(body)))
        return jobs

    def _check_n(self, job: tuple[int, dict, str], cache: dict) -> None:
        """Some servers ignore `n` and answer one choice: learn it from the first reply (or its cached copy), warn
        once, and ask one sample per request from then on (those requests have their own cache keys)."""
        _, body, key = job
        if key not in cache:
            texts, finished = self._texts(self._post(body))
            cache[key] = {"key": key, "texts": texts, "finished": finished}
            if self.cache_path:
                append_jsonl(self.cache_path, [cache[key]])
        if len(cache[key]["texts"]) == 1 < body["n"]:
            self.ignores_n = True
            logger.warning(f"{self.url} answers one choice per request whatever `n` asks; going on with one request "
                           "per sample (set openai.n_per_request 1 to skip this check)")

    def generate(self, prompts: list[str], temperature: float, n: int = 1, max_new_tokens: int = 64,
                 seed: int = 0, desc: str | None = None) -> list[Generation]:
        """`n` responses per prompt, in prompt order; requests of at most `n_per_request` samples each (one, once
        the server has shown it ignores `n`)."""
        cache = read_cache(self.cache_path) if self.cache_path else {}
        k = 1 if self.ignores_n else self.cfg.n_per_request
        jobs = self._jobs(prompts, temperature, n, max_new_tokens, seed, k)
        if k > 1 and n > 1 and prompts:
            self._check_n(jobs[0], cache)
            if self.ignores_n:
                jobs = self._jobs(prompts, temperature, n, max_new_tokens, seed, 1)
        todo = [job for job in jobs if job[2] not in cache]
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=desc, disable=desc is None, unit="req",
                   leave=False)
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency)
        try:
            pending = {pool.submit(self._post, body): key for _, body, key in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    texts, finished = self._texts(fut.result())  # raises BackendError after the retries
                    cache[key] = {"key": key, "texts": texts, "finished": finished}
                    if self.cache_path:
                        append_jsonl(self.cache_path, [cache[key]])  # at once: a crash loses nothing finished
                    bar.update(1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            bar.close()
        out: list[Generation] = []
        for i, body, key in jobs:
            row = cache[key]
            if len(row["texts"]) != body["n"]:
                raise BackendError(f"{self.url}: asked for n={body['n']} samples, got {len(row['texts'])}; the "
                                   "server may not support n > 1: set openai.n_per_request 1")
            out += [Generation(i, temperature, t, [], f) for t, f in zip(row["texts"], row["finished"])]
        return out
