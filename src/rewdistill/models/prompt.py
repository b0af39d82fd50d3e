"""How a prompt becomes token ids for one model: a user turn of its chat template, or the plain text.

Every place that encodes text for a model (sampling, SFT, reward-model training and scoring, RL rollouts,
evaluation) receives a `PromptFormat`, so that the student is trained on exactly the ids it sees when it
generates.
"""
from __future__ import annotations

from dataclasses import dataclass


class PromptFormatError(Exception):
    """The requested prompt format cannot be used with this tokenizer; the message says what to do."""


@dataclass(frozen=True)
class PromptFormat:
    tokenizer: object  # a transformers tokenizer with a pad token
    chat: bool  # True: prompts are a user turn of the tokenizer's chat template + the generation prompt

    @classmethod
    def from_tokenizer(cls, tokenizer, chat_template: str = "auto", name: str = "") -> PromptFormat:
        """chat_template: auto (the chat template when the tokenizer has one), on (required), off (plain text)."""
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template == "on" and not has_template:
            raise PromptFormatError(f"tokenizer {name or type(tokenizer).__name__!r} has no chat template; "
                                    "set task.chat_template to auto or off")
        return cls(tokenizer, has_template and chat_template != "off")

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    def text(self, prompt: str) -> str:
        """The prompt as the model reads it (for engines that take text: vLLM, servers)."""
        if not self.chat:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(self.text(prompt), add_special_tokens=False)["input_ids"]

    def pair_ids(self, prompt: str, response: str) -> tuple[list[int], list[int]]:
        """Prompt ids, then response ids + EOS, tokenised apart (as the model sees them when it generates).
        Plain prompts: the response gets exactly one leading space; chat prompts: none (it starts the assistant
        turn); an empty response is EOS alone. Used wherever text from another model is scored or trained on."""
        return self.prompt_ids(prompt), self.tokenizer(self.body(response), add_special_tokens=False)["input_ids"] + [
            self.eos_id]

    def body(self, response: str) -> str:
        """A response's text as `pair_ids` tokenises it."""
        return response.strip() if self.chat or not response.strip() else " " + response.lstrip()

    def pairs(self, prompts: dict[str, str], rows: list[dict]) -> list[tuple[list[int], list[int]]]:
        """`pair_ids` of rows {qid, text}, the prompt looked up by qid: each prompt tokenised once, the responses in
        one batched call (the same ids as `pair_ids` row by row; a question has many responses)."""
        ids = {q: self.prompt_ids(prompts[q]) for q in dict.fromkeys(r["qid"] for r in rows)}
        bodies = [self.body(r["text"]) for r in rows]
        resp = self.tokenizer(bodies, add_special_tokens=False)["input_ids"] if bodies else []
        return [(list(ids[r["qid"]]), x + [self.eos_id]) for r, x in zip(rows, resp)]

    def sequences(self, prompts: dict[str, str], rows: list[dict]) -> list[list[int]]:
        """Prompt + response ids of rows {qid, text} (what a reward model scores)."""
        return [p + r for p, r in self.pairs(prompts, rows)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def same_tokens(self, other: PromptFormat) -> bool:
        """Whether both encode text to the same ids (same vocabulary, EOS and prompt wrapping). Pad ids may differ:
        every batch here carries its attention mask, so a pad id is never read (a reward model saves its own,
        `head_pad_id`)."""
        a, b = self.tokenizer, other.tokenizer
        return (a.get_vocab() == b.get_vocab() and a.eos_token_id == b.eos_token_id and self.chat == other.chat
                and self.prompt_ids("x") == other.prompt_ids("x"))

    def head_pad_id(self, n_embeddings: int | None = None) -> int | None:
        """A pad id for a sequence-classification head that plain transformers pools correctly.

        transformers scores a sequence at its rightmost token that is not `config.pad_token_id`; every sequence a
        reward model scores here ends with EOS, so with pad == EOS (Llama 3 and SmolLM2 tokenizers, or any
        tokenizer given EOS as pad) the EOS itself would be skipped and a user of the saved model would read the
        score one token early. Then an unused special token stands in: one named like a pad, else a reserved /
        unused one, else the unknown token, else any other special token that is not BOS, EOS or in the chat
        template's prompt wrapping (and below `n_embeddings`, the model's embedding rows). None when there is
        none (the reward-model stage then warns)."""
        tok, eos = self.tokenizer, self.eos_id
        if self.pad_id != eos:
            return self.pad_id
        wrapping = set(self.prompt_ids("x"))  # BOS, role markers, template tokens
        taken = {eos, tok.bos_token_id} | wrapping
        specials = [(i, str(t)) for i, t in tok.added_tokens_decoder.items()
                    if t.special and i not in taken and (n_embeddings is None or i < n_embeddings)]

        def rank(item: tuple[int, str]) -> tuple[int, int]:
            i, name = item
            low = name.lower()
            kind = 0 if "pad" in low else 1 if ("reserved" in low or "unused" in low) else \
                2 if i == tok.unk_token_id else 3
            return kind, i

        return min(specials, key=rank)[0] if specials else None
