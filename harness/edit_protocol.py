"""The per-instance protocol: for each instance, edit the fresh model → attack → restore (UnLOK-VQA).

A benchmark with `per_instance = True` (benchmarks/unlok_attacks.py's `UnlokProtocol`) is run
this way instead of "apply the method once, then evaluate": the cell's method is a defence
(harness/api/edit.py `InstanceDefence`), applied to one instance at a time. For each instance:

1. the benchmark lists every request about it (attacks, utility, edit-score probabilities);
2. the plain model answers them (the `*_pre` values; shared by every defence through the cache);
3. the model answers them again under the instance's edit, an `Intervention` named by the
   instance's recipe (harness/backends/editing.py): entered around the batch, the edit is
   made, and leaving it restores the weights bit for bit;
4. the benchmark scores the two sets of answers.

Every answer is cached as its instance finishes, keyed by the edit's identity: a rerun makes
no model calls and never edits, and a killed run resumes at the instance it was on. The
per-instance values become metrics with bootstrap CIs over instances (`asr[attack=bb]`, ...).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from harness.api.edit import EditInstance, InstanceDefence
from harness.api.metric import MetricResult
from harness.errors import ConfigError
from harness.results import SampleRecord
from harness.stats import mean_ci


@dataclass
class ProtocolRun:
    results: dict[str, MetricResult]
    samples: list[SampleRecord]
    edit_losses: dict[str, list[float]] = field(default_factory=dict)  # instance -> losses (edits made this run)
    seconds: float = 0.0


def _recipe(defence: InstanceDefence, inst: EditInstance, rows: list[tuple[str, str]], seed: int,
            lens_layers: tuple[int, ...]) -> dict[str, Any]:
    """What the edit depends on (beyond the model, which the backend's identity names)."""
    return {"defence": defence.name, "params": defence.params.model_dump(), "rows": rows, "answer": inst.answer,
            "images": [m.sha256 for m in inst.images], "seed": seed, "lens_layers": list(lens_layers)}


def run_edit_protocol(benchmark: Any, backend: Any, backends: Any, defence: InstanceDefence | None,
                      seed: int, console: Any = None) -> ProtocolRun:
    """Run every instance of `benchmark` on `backend` (the cached plain model) under `defence`
    (None: no edit, so the values after equal those before); `backends` is the factory that
    makes the edited backends."""
    from rich.progress import Progress

    from harness.backends.editing import edit_intervention
    from harness.representations.features import num_layers
    from harness.representations.logit_lens import default_layers

    t0 = time.time()
    instances = benchmark.edit_instances()
    if not instances:
        raise ConfigError(f"{benchmark.name}: no instances to edit")
    # The attacks' lens layers, which the layer-wise defences train against too (config only: a
    # fully cached rerun loads no weights).
    layers = benchmark.chosen_lens_layers() or default_layers(num_layers(backend))
    target = defence.target_text if defence else (lambda inst: inst.answer)
    erases = defence.erases if defence else True
    losses: dict[str, list[float]] = {}
    values: list[dict[str, float]] = []
    samples: list[SampleRecord] = []
    with Progress(transient=True, disable=console is None) as bar:
        task = bar.add_task(f"{defence.name if defence else 'no defence'}: instances", total=len(instances))
        for inst in instances:
            groups = benchmark.instance_requests(inst, instances, target(inst), layers)
            flat = [r for g in groups.values() for r in g]
            pre_flat = backend.run(flat)
            post_flat = pre_flat
            if defence is not None:
                rows = defence.rows(inst, benchmark.set_aside_rephrasings(inst))
                iv = edit_intervention(defence, inst, benchmark.prompt_text, rows,
                                       _recipe(defence, inst, rows, seed, layers), seed, layers, losses)
                post_flat = backends.intervene(backend, iv).run(flat)
            pre, post, k = {}, {}, 0
            for name, group in groups.items():
                pre[name], post[name] = pre_flat[k: k + len(group)], post_flat[k: k + len(group)]
                k += len(group)
            v = benchmark.score_instance(inst, instances, pre, post, erases)
            values.append(v)
            shown = next((g[0] for g in post.values() if g and hasattr(g[0], "texts")), None)
            samples.append(SampleRecord(split="forget", item_id=inst.id, prompt=benchmark.prompt_text(inst.question),
                                        reference=inst.answer, generation=shown.texts[0] if shown else None,
                                        values={m: x for m, x in v.items() if not math.isnan(x)}))
            bar.advance(task)
    return ProtocolRun(_aggregate(instances, values, benchmark), samples, losses, time.time() - t0)


def _aggregate(instances: list[EditInstance], values: list[dict[str, float]], benchmark: Any) -> dict[str, MetricResult]:
    """Each value's mean over the instances where it is defined, with a bootstrap 95% CI."""
    out: dict[str, MetricResult] = {}
    names = list(dict.fromkeys(m for v in values for m in v))
    for m in names:
        per = {inst.id: v[m] for inst, v in zip(instances, values) if m in v and not math.isnan(v[m])}
        base = m.split("[", 1)[0]
        if per:
            mean, lo, hi = mean_ci(list(per.values()))
            out[m] = MetricResult(m, mean, lo, hi, len(per), benchmark.metric_directions.get(base), per_item=per)
        else:
            out[m] = MetricResult(m, None, None, None, 0, benchmark.metric_directions.get(base),
                                  details={"reason": "undefined for every instance (pre-edit probability 0 or 1)"})
    return out
