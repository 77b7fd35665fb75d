"""Draw an Ardour take as a piano roll: the call track's notes and the recorded answer, in bars.

    python examples/daw/pianoroll.py CALL.mid TAKE.mid OUT.png [--title TEXT]

CALL.mid is what the call track played, TAKE.mid what the armed answer track recorded
(``<session>/interchange/<session folder>/midifiles/Take1_answer-1.mid``).  Both are read in
beats (Ardour writes its takes without a tempo event, relative to the region start, so a take
recorded from the session start is on the session's grid).  Bar lines are the session's 4/4 bars.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bridge.midifile import TimedNote, read_midi  # noqa: E402

COLOURS = {"call (Ardour's call track)": "#3b6fb6", "answer (recorded by Ardour)": "#e07b39"}


def draw(
    call: Sequence[TimedNote],
    take: Sequence[TimedNote],
    out: Path,
    *,
    title: str,
    beats_per_bar: int = 4,
) -> None:
    """Write the piano roll PNG (caller's thread; matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    notes = [*call, *take]
    if not notes:
        raise ValueError("nothing to draw: both files are empty")
    end = max(n.end for n in notes)
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=120)
    for bar in range(0, int(end) + beats_per_bar, beats_per_bar):
        ax.axvline(bar, color="#cccccc", linewidth=0.6, zorder=0)
    for (label, colour), group in zip(COLOURS.items(), (call, take), strict=True):
        for n in group:
            ax.broken_barh(
                [(n.onset, n.duration)],
                (n.pitch - 0.4, 0.8),
                facecolors=colour,
                edgecolors="black",
                linewidth=0.3,
                alpha=0.35 + 0.65 * n.velocity / 127,
            )
        ax.plot([], [], color=colour, label=label)
    pitches = [n.pitch for n in notes]
    ax.set_ylim(min(pitches) - 2, max(pitches) + 7)  # room for the legend above the notes
    ax.set_xlim(0, end + 0.5)
    ticks = list(range(0, int(end) + 1, beats_per_bar))
    ax.set_xticks(ticks, [str(t // beats_per_bar + 1) for t in ticks])
    ax.set_xlabel("bar (Ardour's grid)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    ax.legend(
        handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="upper right", ncols=2
    )
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("call", type=Path, help="the call track's MIDI file")
    parser.add_argument("take", type=Path, help="the answer track's recorded take")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--title", default="Ardour: the call and the recorded answer")
    args = parser.parse_args(argv)
    draw(read_midi(args.call).notes, read_midi(args.take).notes, args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
