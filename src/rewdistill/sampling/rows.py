"""Sampling a list of questions at several temperatures in fixed chunks: resumable (a progress file keeps every
finished chunk) and shardable over machines (`--shard i/n`, then `--merge-shards`)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from rewdistill.faults import kill_point
from rewdistill.io import append_text, read_jsonl_prefix, write_jsonl


class ShardDone(Exception):
    """A sampling stage wrote its shard (`--shard i/n`); the run stops there until the shards are merged."""


def sample_rows(sampler, questions: list[dict], scfg, seed: int, who: str, extract: Callable[[str, str], str | None],
                progress: Path | None = None, shard: tuple[int, int] | None = None, merge: bool = False) -> list[dict]:
    """Responses of `sampler` to `questions` ({qid, prompt}) at every temperature of `scfg` (a SampleCfg), with the
    answer `extract(text, qid)` finds.

    Questions go in fixed chunks of batch_size // n_per_temperature (one generation batch per temperature), each
    with its own seed, so the result does not depend on where a run stopped. With `progress`, every finished
    chunk is appended there at once, and a rerun samples only the chunks that are missing (a torn last line,
    from a kill mid-write, is dropped). `shard=(i, n)`: sample only chunks k with k % n == i into a shard file, then
    raise ShardDone; `merge`: join the shard files instead of sampling."""
    size = max(1, scfg.batch_size // scfg.n_per_temperature)
    n_chunks = (len(questions) + size - 1) // size
    todo = list(range(n_chunks))
    if progress and merge:
        done, todo = merge_shards(progress, n_chunks), []
    else:
        if progress and shard:
            i, n = shard
            progress = progress.with_name(progress.name.replace(".progress.", f".shard-{i}-of-{n}."))
            todo = [k for k in todo if k % n == i]
        done = {c["chunk"]: c["rows"] for c in read_jsonl_prefix(progress)} if progress else {}
        if progress:
            write_jsonl(progress, [{"chunk": k, "rows": done[k]} for k in sorted(done)])  # drop a torn tail
    bar = tqdm(total=len(todo), initial=len([k for k in todo if k in done]), desc=who, unit="chunk", leave=False)
    for k in todo:
        if k in done:
            continue
        chunk = questions[k * size : (k + 1) * size]
        rows = []
        for t_i, temp in enumerate(scfg.temperatures):
            gens = sampler.generate([q["prompt"] for q in chunk], temp, scfg.n_per_temperature, scfg.max_new_tokens,
                                    seed=seed * 1000 + t_i + 100_000 * k)
            for g in gens:
                q = chunk[g.prompt_index]
                rows.append({"qid": q["qid"], "temperature": temp, "text": g.text,
                             "answer": extract(g.text, q["qid"]), "finished": g.finished})
        done[k] = rows
        if progress:
            line = json.dumps({"chunk": k, "rows": rows}) + "\n"
            kill_point("sample-torn", before=lambda line=line: append_text(progress, line[: len(line) // 2]))
            append_text(progress, line)
            kill_point("sample-chunk")
        bar.update(1)
    bar.close()
    if progress and shard:
        raise ShardDone(f"shard {shard[0]}/{shard[1]}: {len(todo)} of {n_chunks} question chunks in "
                        f"{progress.name}; when every shard is written, run again with --merge-shards")
    return [r for k in range(n_chunks) for r in done[k]]


def merge_shards(progress: Path, n_chunks: int) -> dict[int, list]:
    """Chunks from every `<name>.shard-i-of-n.jsonl` next to `progress`; none may be missing or doubled."""
    pattern = progress.name.replace(".progress.", ".shard-*-of-*.")
    files = sorted(progress.parent.glob(pattern))
    if not files:
        raise RuntimeError(f"--merge-shards: no shard files {pattern} in {progress.parent}; run the shards first "
                           "(--shard i/n)")
    counts = {int(re.search(r"shard-\d+-of-(\d+)\.", f.name).group(1)) for f in files}
    if len(counts) > 1:
        raise RuntimeError(f"--merge-shards: shard files of different splits ({', '.join(f.name for f in files)}); "
                           "keep one --shard i/n split")
    n = counts.pop()
    done: dict[int, list] = {}
    where: dict[int, str] = {}
    for f in files:
        for c in read_jsonl_prefix(f):
            if c["chunk"] in done:
                raise RuntimeError(f"--merge-shards: question chunk {c['chunk']} is in both {where[c['chunk']]} and "
                                   f"{f.name}; remove the shard files of the wrong split and rerun those shards")
            done[c["chunk"]], where[c["chunk"]] = c["rows"], f.name
    missing = [k for k in range(n_chunks) if k not in done]
    if missing:
        shards = sorted({k % n for k in missing})
        raise RuntimeError(f"--merge-shards: {len(missing)} of {n_chunks} question chunks missing, from shards "
                           f"{', '.join(f'{s}/{n}' for s in shards)}; run those (--shard i/{n}) and merge again")
    return done
