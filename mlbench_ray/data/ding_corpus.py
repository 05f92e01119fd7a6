"""Build a small English-German parallel corpus in the WMT layout from the Ding dictionary.

    python -m mlbench_ray.data.ding_corpus [DICTIONARY] --output ROOT [--dataset wmt16] [--min-words 3]
        [--held-out 0.02]

DICTIONARY is the German-English file of the Ding dictionary (Debian package `trans-de-en`:
`/usr/share/trans/de-en`, the default). Each of its lines reads `German :: English`; both sides hold
the same number of `|`-separated entries, which translate each other, and an entry may list
alternatives separated by `;`. Among its entries are many example sentences and phrases ("Das ist
blanker Unsinn. :: That is sheer nonsense."). The tool keeps the entries of at least `--min-words`
words on both sides, takes the first alternative of each side, removes the dictionary's annotations
(`{f}`, `[techn.]`, `<...>`, `/.../`) and drops duplicates. Pairs are shuffled with a fixed seed; the
validation and the test split each get `--held-out` of them (a share, or a count when 1 or more), and
the rest is training data. The six files go to `ROOT/<dataset>-en-de/{train,valid,test}.{en,de}`.

This is real parallel text, but dictionary examples, not news: BLEU on it is not comparable with
WMT figures. The test split is not newstest2014, so run the translation tasks with
`task_options.test_lines: null` and `data.verify_checksums: false`; the table then labels the
dataset as not verified.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

DEFAULT_DICTIONARY = Path("/usr/share/trans/de-en")
ANNOTATION = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>|/[^/\s][^/]*/")
SPACES = re.compile(r"\s+")


def clean(entry: str) -> str:
    """Return the first alternative of an entry, without the dictionary's annotations."""
    first = re.split(r";\s", entry, maxsplit=1)[0]
    return SPACES.sub(" ", ANNOTATION.sub(" ", first)).strip(" ;,")


def parse_pairs(lines: list[str], min_words: int) -> list[tuple[str, str]]:
    """Return the (English, German) pairs of the entries with at least `min_words` words on both sides."""
    pairs: dict[tuple[str, str], None] = {}
    for line in lines:
        if line.startswith("#") or " :: " not in line:
            continue
        german, english = line.rstrip("\n").split(" :: ", 1)
        german_entries, english_entries = german.split(" | "), english.split(" | ")
        if len(german_entries) != len(english_entries):
            continue
        for de, en in zip(german_entries, english_entries, strict=True):
            de, en = clean(de), clean(en)
            if len(de.split()) >= min_words and len(en.split()) >= min_words:
                pairs[(en, de)] = None
    return list(pairs)


def write_corpus(
    pairs: list[tuple[str, str]], folder: Path, seed: int = 0, held_out_share: float = 0.02
) -> dict[str, int]:
    """Shuffle, hold out validation and test pairs, write the six files; return the pairs per split.

    `held_out_share` below 1 is a share of all pairs per held-out split; 1 or more is a count.
    """
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    if held_out_share < 1:
        held_out = max(1, int(len(shuffled) * held_out_share))
    else:
        held_out = int(held_out_share)
    splits = {
        "test": shuffled[:held_out],
        "valid": shuffled[held_out : 2 * held_out],
        "train": shuffled[2 * held_out :],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for split, part in splits.items():
        for index, language in enumerate(("en", "de")):
            text = "".join(pair[index] + "\n" for pair in part)
            (folder / f"{split}.{language}").write_text(text, encoding="utf-8")
    return {split: len(part) for split, part in splits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlbench_ray.data.ding_corpus",
        description="Write an English-German corpus in the WMT layout from the Ding dictionary.",
    )
    parser.add_argument(
        "dictionary",
        nargs="?",
        type=Path,
        default=DEFAULT_DICTIONARY,
        help=f"the Ding de-en file (default {DEFAULT_DICTIONARY}, Debian package trans-de-en)",
    )
    parser.add_argument("--output", type=Path, required=True, help="data root to write into")
    parser.add_argument("--dataset", choices=("wmt16", "wmt17"), default="wmt16", help="layout folder name")
    parser.add_argument(
        "--min-words", type=int, default=3, help="minimum words on each side of a kept entry (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle before the split")
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.02,
        help="pairs in each of the valid and test splits: a share below 1 (default 0.02), or a count",
    )
    args = parser.parse_args(argv)
    if not args.dictionary.is_file():
        print(
            f"error: dictionary {args.dictionary} not found; install Debian's trans-de-en "
            f"(apt-get install trans-de-en) or pass the path of a Ding de-en file",
            file=sys.stderr,
        )
        return 2
    with args.dictionary.open(encoding="utf-8") as handle:
        pairs = parse_pairs(handle.readlines(), args.min_words)
    if args.held_out <= 0:
        print(
            f"error: --held-out {args.held_out} must be positive: a share below 1 or a count", file=sys.stderr
        )
        return 2
    if len(pairs) < 100:
        print(
            f"error: {args.dictionary} gave {len(pairs)} pairs of at least {args.min_words} words; at least "
            f"100 are needed. Lower --min-words or check that the file is a Ding de-en dictionary",
            file=sys.stderr,
        )
        return 2
    folder = args.output / f"{args.dataset}-en-de"
    if args.held_out >= 1 and 2 * args.held_out >= len(pairs):
        print(
            f"error: --held-out {args.held_out:g} leaves no training pairs of {len(pairs)}; lower it",
            file=sys.stderr,
        )
        return 2
    counts = write_corpus(pairs, folder, args.seed, args.held_out)
    print(
        f"wrote {folder}: {counts['train']} train, {counts['valid']} valid, {counts['test']} test pairs",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
