"""A real OpenAI-compatible HTTP server on loopback, serving a tiny local model, for backend tests.

It can fail every k-th request with HTTP 503, stop (close its socket) after m answered requests, and demand
an API key.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rewdistill.labels import RUBRIC_MARK
from rewdistill.models.forward import continuation_logprobs
from rewdistill.models.load import load_causal_lm, load_prompt_format
from rewdistill.sampling.hf import generate


class TinyOpenAIServer:
    def __init__(self, model_path: str, fail_every: int = 0, stop_after: int = 0, api_key: str | None = None,
                 judge=None, ignore_n: bool = False):
        self.model = load_causal_lm(model_path).eval()
        self.tok = load_prompt_format(model_path)
        self.fail_every, self.stop_after, self.api_key = fail_every, stop_after, api_key
        self.judge = judge  # judge(prompt) -> reply text, for prompts carrying the judge rubric
        self.ignore_n = ignore_n  # answer one choice whatever `n` asks, as several popular servers do
        self.requests = self.answered = 0
        self.lock = threading.Lock()
        self.seen_auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _reply(self, h, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def handle(self, h) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        with self.lock:
            if self.stop_after and self.answered >= self.stop_after:
                h.close_connection = True  # stopped: hang up without an answer
                return
            self.requests += 1
            self.seen_auth.append(h.headers.get("Authorization"))
            if self.api_key and h.headers.get("Authorization") != f"Bearer {self.api_key}":
                return self._reply(h, 401, {"error": {"message": "bad key"}})
            if self.fail_every and self.requests % self.fail_every == 0:
                return self._reply(h, 503, {"error": {"message": "overloaded"}})
            chat = h.path.endswith("/chat/completions")
            if not chat and body.get("echo") and isinstance(body["prompt"], list):  # score token ids, as vLLM does
                ids = body["prompt"]
                lps = continuation_logprobs(self.model, [ids[:1]], [ids[1:]], self.tok.pad_id)[0]
                self.answered += 1
                c = {"index": 0, "text": "", "finish_reason": "length",
                     "logprobs": {"tokens": [str(t) for t in ids] + ["x"], "token_logprobs": [None, *lps, -1.0]}}
                return self._reply(h, 200, {"object": "text_completion", "choices": [c]})
            prompt = body["messages"][-1]["content"] if chat else body["prompt"]
            if self.judge is not None and RUBRIC_MARK in prompt:
                text = self.judge(prompt)
                c = {"index": 0, "finish_reason": "stop"}
                c.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                self.answered += 1
                return self._reply(h, 200, {"choices": [c] * body.get("n", 1)})
            n = 1 if self.ignore_n else body.get("n", 1)
            gens = generate(self.model, self.tok, [prompt], body.get("temperature", 1.0), n,
                            body.get("max_tokens", 16), batch_size=n, seed=body.get("seed", 0))
            choices = []
            for k, g in enumerate(gens):
                c = {"index": k, "finish_reason": "stop" if g.finished else "length"}
                c.update({"message": {"role": "assistant", "content": g.text}} if chat else {"text": g.text})
                choices.append(c)
            self._reply(h, 200, {"object": "chat.completion" if chat else "text_completion", "choices": choices})
            self.answered += 1
            if self.stop_after and self.answered >= self.stop_after:
                threading.Thread(target=self.close, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
