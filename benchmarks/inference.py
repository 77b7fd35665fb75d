"""Section 1 — inference per generated event: Antiphon's stateful ONNX step vs the reference
method re-running its whole 100-event window for every event (onnxruntime and Keras).

Counted per *event*, honestly: in Antiphon's token scheme an event is ``SHIFT PITCHES DUR VEL``
(``SHIFT REST`` for a rest), so one event costs 2–4 model steps plus the grammar mask and the
sampling of each token — exactly what the generation worker does.  The reference method costs one
window run plus building its one-hot input.  Main thread only.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.options import Options
from benchmarks.report import Section, Table
from benchmarks.stats import Summary, fmt, ratio, summarize

__all__ = ["call_notes", "run", "time_antiphon", "time_window"]


def call_notes(model: Any, events: int, rng: np.random.Generator) -> list[Any]:
    """A call of about ``events`` events in the model's own style (sampled from it, untimed),
    so priming sees realistic tokens."""
    from bridge.generate import EventStream, SamplingParams

    stream = EventStream(model, [], SamplingParams(top_p=0.95), rng)
    return model.scheme.notes_from_events(stream.next_event() for _ in range(events))


def time_antiphon(
    model: Any, call: list[Any], events: int, rng: np.random.Generator, *, repeats_prime: int = 20
) -> dict[str, Any]:
    """The bridge's own generation path (:class:`bridge.generate.EventStream`): prime with
    ``call`` (timed ``repeats_prime`` times), then time each of ``events`` events; also single
    model steps on their own."""
    from bridge.generate import EventStream, SamplingParams

    params = SamplingParams(temperature=1.0, top_p=0.95)
    prime_times = []
    for _ in range(repeats_prime):
        stream = EventStream(model, call, params, rng)
        prime_times.append(stream.prime_seconds)
    event_times = []
    for _ in range(events):
        start = time.perf_counter()
        stream.next_event()
        event_times.append(time.perf_counter() - start)
    tokens_per_event = stream.tokens_sampled / events
    step_times = []
    state = model.initial_state()
    token = model.scheme.bos
    for _ in range(int(tokens_per_event * events)):
        start = time.perf_counter()
        _, state = model.run([token], state)
        step_times.append(time.perf_counter() - start)
    return {
        "event": summarize(event_times),
        "step": summarize(step_times),
        "prime": summarize(prime_times),
        "tokens_per_event": tokens_per_event,
        "call_events": stream.call_events,
        "call_tokens": len(model.scheme.encode(call)),
    }


def time_window(
    next_probs: Any, window: np.ndarray, events: int, rng: np.random.Generator
) -> Summary:
    """The reference loop: probabilities for the window, sample, slide the window; per event."""
    ids = np.array(window, dtype=np.int64)
    times = []
    for _ in range(events):
        start = time.perf_counter()
        probs = next_probs(ids)
        nxt = int(rng.choice(probs.size, p=probs))
        ids = np.append(ids[1:], nxt)
        times.append(time.perf_counter() - start)
    return summarize(times)


def _reference_onnx(options: Options, context: dict[str, object], work: Path) -> tuple[Path, str]:
    """The window net to time: given/shipped, trained in this run, or an untrained one of that
    shape (``training.reference``'s builder and exporter, so the graph is the same)."""
    if options.reference_model.is_file():
        return options.reference_model, f"`{options.reference_model.name}`"
    trained = context.get("reference_onnx")
    if isinstance(trained, Path) and trained.is_file():
        return trained, "trained in section 4"
    from benchmarks.reference import REFERENCE_VOCAB
    from training.export import export_reference
    from training.reference import ReferenceConfig, ReferenceVocabulary, build_reference

    config = ReferenceConfig(REFERENCE_VOCAB, window=options.window)
    vocabulary = ReferenceVocabulary(("<unk>", *(f"s{i:03d}" for i in range(1, REFERENCE_VOCAB))))
    path = work / "seed.onnx"
    export_reference(build_reference(config), config, vocabulary, {"arch": "reference"}, path)
    return path, "untrained, same shape (timing does not depend on the weights)"


def run(options: Options, context: dict[str, object]) -> Section:
    from bridge.model import load_model
    from training.onnx_runner import WindowRunner

    section = Section(1, "Inference per generated event")
    rng = np.random.default_rng(options.rng_seed)
    model = load_model(options.model)
    call = call_notes(model, options.call_events, rng)
    ours = time_antiphon(model, call, options.events, rng, repeats_prime=5 if options.quick else 30)
    with tempfile.TemporaryDirectory(prefix="antiphon-bench-") as tmp:
        ref_path, ref_origin = _reference_onnx(options, context, Path(tmp))
        nets = {threads: WindowRunner(ref_path, threads=threads) for threads in (1, None)}
        vocab, size = len(nets[1].vocabulary), nets[1].window
        window = rng.integers(1, vocab, size=size)
        ref = {}
        for threads, net in nets.items():

            def probabilities(ids: np.ndarray, net: Any = net) -> np.ndarray:
                probs = net.predict(np.asarray(ids)[None, -size:])[0].astype(np.float64)
                return probs / probs.sum()

            probabilities(window)  # warm-up
            ref[threads] = time_window(probabilities, window, options.events, rng)
        keras_summary = _time_keras(vocab, size, window, options.keras_events, rng)
    layers = "×".join(str(u) for u in model.layers)
    ref_params = f"{size}-event window, vocabulary {vocab}"
    section.method = (
        f"Antiphon: `{options.model.name}` (LSTM {layers}, vocabulary {model.vocab_size}), "
        f"primed with a {ours['call_events']}-event call ({ours['call_tokens']} tokens, sampled "
        f"from the model), then {options.events} events generated by the bridge's own "
        "`EventStream` (one token at a time: grammar mask, top-p 0.95 sampling, one model step) "
        f"(mean {ours['tokens_per_event']:.2f} tokens per event), onnxruntime with 1 thread as "
        f"the bridge loads it. Reference method: its window net ({ref_params}; {ref_origin}) "
        "re-run on the whole window for every event, the window rebuilt and slid each time — "
        f"in onnxruntime ({options.events} events, 1 thread and default threads) and with Keras "
        f"`model.predict` ({options.keras_events} events)."
    )
    best_ref = min(ref.values(), key=lambda s: s.p50)
    rows = [
        ("Antiphon stateful step (ONNX, 1 thread)", ours["event"]),
        ("reference window re-run, onnxruntime 1 thread", ref[1]),
        ("reference window re-run, onnxruntime default threads", ref[None]),
        ("reference window re-run, Keras model.predict", keras_summary),
    ]
    table = Table(
        ["per generated event", "p50 ms", "p99 ms", "events/s (1/mean)", "p50 vs Antiphon"],
        caption="**Time per generated event**",
    )
    for label, summary in rows:
        table.rows.append(
            [
                label,
                fmt(summary.p50 * 1e3),
                fmt(summary.p99 * 1e3),
                fmt(1 / summary.mean),
                f"{fmt(ratio(summary.p50, ours['event'].p50))}×",
            ]
        )
        section.data[label] = summary
    section.tables.append(table)
    prime, step = ours["prime"], ours["step"]
    extra = Table(["figure", "p50 ms", "p99 ms", "note"], caption="**Steps and priming**")
    extra.rows.append(
        [
            "Antiphon, one model step (1 token)",
            fmt(step.p50 * 1e3),
            fmt(step.p99 * 1e3),
            f"{step.n} steps",
        ]
    )
    extra.rows.append(
        [
            f"Antiphon, prime a {ours['call_events']}-event call",
            fmt(prime.p50 * 1e3),
            fmt(prime.p99 * 1e3),
            f"{ours['call_tokens']} tokens in one run",
        ]
    )
    extra.rows.append(
        [
            "reference, first event after a call",
            fmt(best_ref.p50 * 1e3),
            fmt(best_ref.p99 * 1e3),
            "it has no state: every event costs a window",
        ]
    )
    section.tables.append(extra)
    section.data["antiphon_step"] = step
    section.data["antiphon_prime"] = prime
    section.data["tokens_per_event"] = ours["tokens_per_event"]
    section.figures.append(_plot(options.out_dir, rows))
    section.headline.append(
        (
            "inference per event, p50 / p99 ms",
            f"{fmt(ours['event'].p50 * 1e3)} / {fmt(ours['event'].p99 * 1e3)}",
            f"{fmt(best_ref.p50 * 1e3)} / {fmt(best_ref.p99 * 1e3)} (window re-run, onnxruntime)",
            f"{fmt(ratio(best_ref.p50, ours['event'].p50))}× faster",
        )
    )
    section.headline.append(
        (
            "inference per event vs Keras predict, p50 ms",
            fmt(ours["event"].p50 * 1e3),
            fmt(keras_summary.p50 * 1e3),
            f"{fmt(ratio(keras_summary.p50, ours['event'].p50))}× faster",
        )
    )
    return section


def _time_keras(
    vocab: int, size: int, window: np.ndarray, events: int, rng: np.random.Generator
) -> Summary:
    """Keras ``model.predict`` on the window for every event: the reference network as
    ``training.reference`` builds it (untrained; timing does not need the weights)."""
    from training.reference import ReferenceConfig, build_reference

    model = build_reference(ReferenceConfig(vocab, window=size))

    def probabilities(ids: np.ndarray) -> np.ndarray:
        x = np.asarray(ids, dtype=np.int32)[-size:].reshape(1, -1)
        out = np.asarray(model.predict(x, verbose=0), dtype=np.float64).reshape(-1)
        return out / out.sum()

    probabilities(window)  # warm-up (graph tracing)
    return time_window(probabilities, window, events, rng)


def _plot(out_dir: Path, rows: list[tuple[str, Summary]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [
        "Antiphon\nstateful step",
        "reference window\nonnxruntime, 1 thread",
        "reference window\nonnxruntime, default threads",
        "reference window\nKeras predict",
    ]
    p50 = np.array([s.p50 * 1e3 for _, s in rows])
    p99 = np.array([s.p99 * 1e3 for _, s in rows])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    y = np.arange(len(rows))
    ax.barh(y, p50, color=["tab:green"] + ["tab:gray"] * (len(rows) - 1), label="p50")
    ax.errorbar(p99, y, fmt="k|", markersize=14, label="p99")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per generated event (log scale)")
    ax.legend(loc="upper right")
    ax.set_title("Inference per generated event")
    fig.tight_layout()
    name = "inference.png"
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return name
