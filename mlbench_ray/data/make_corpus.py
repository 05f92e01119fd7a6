"""Build a corpus in WikiText-2's layout from your own plain-text files.

    python -m mlbench_ray.data.make_corpus SOURCE... --output ROOT [--max-words N] [--vocab-size N]

SOURCE is a text file or a folder (searched for `--pattern`, `*.txt` by default). Each file is a
document (`--strip-rst` first removes reStructuredText inline markup); paragraphs are separated by
blank lines. Paragraphs that do not read as prose (code, tables, markup lines, headings) are left
out. Documents are shuffled with a fixed seed and split into train, validation and test by word count
(80/10/10 by default), like WikiText's split by article. The tool writes

- `ROOT/wikitext-2-raw/wiki.{train,valid,test}.raw`: one paragraph a line, words and punctuation
  separated by spaces, as in WikiText;
- `ROOT/wikitext-2/wiki.{train,valid,test}.tokens`: the same text with every word outside the
  training split's `--vocab-size` most frequent words replaced by `<unk>`, as in WikiText.

Its files do not match WikiText-2's published checksums: run the sweep with
`data.verify_checksums: false` (`--no-verify-checksums`), and the results label the corpus as not
verified.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from collections import Counter
from pathlib import Path

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.,]\d+)*|[^\sA-Za-z\d]")
SPLITS = ("train", "valid", "test")
# reStructuredText inline markup: roles such as :func:, backquotes, emphasis stars, escapes.
RST_MARKUP = re.compile(r":[a-z]+(?::[a-z]+)?:|`+|\*\*?|\\|~(?=\w)")


def tokenize(text: str) -> list[str]:
    """Words, numbers and single punctuation marks, as WikiText separates them."""
    return WORD.findall(text)


def is_prose(paragraph: str) -> bool:
    """True for running text: not indented, not markup, mostly alphabetic words."""
    lines = paragraph.splitlines()
    if not lines or lines[0].startswith((" ", "\t", "..", ">>>", "$", "|", "+", "=", "-", "*", ":")):
        return False
    # A heading: a line underlined (or overlined) with one repeated punctuation mark, as in rst.
    if any(len(set(line.strip())) == 1 and not line.strip().isalnum() for line in lines if line.strip()):
        return False
    words = paragraph.split()
    if len(words) < 8:
        return False
    alphabetic = sum(1 for word in words if word.strip(".,;:()\"'!?").isalpha())
    return alphabetic / len(words) >= 0.75


def read_documents(sources: list[Path], pattern: str, strip_rst: bool = False) -> list[list[str]]:
    """Read each file's prose paragraphs, tokenized and joined with single spaces."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files.extend(sorted(source.rglob(pattern)))
        elif source.is_file():
            files.append(source)
        else:
            raise FileNotFoundError(f"source {source} does not exist; pass text files or folders")
    documents = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        prose = [p for p in re.split(r"\n\s*\n", text) if is_prose(p)]
        if strip_rst:
            prose = [RST_MARKUP.sub("", p) for p in prose]
        paragraphs = [" ".join(tokenize(" ".join(p.split()))) for p in prose]
        if paragraphs:
            documents.append(paragraphs)
    return documents


def split_documents(
    documents: list[list[str]], fractions: tuple[float, float], max_words: int | None, seed: int
) -> dict[str, list[str]]:
    """Shuffle documents and deal them to test, validation, then train, by word count."""
    order = list(documents)
    random.Random(seed).shuffle(order)
    total = sum(len(p.split()) for doc in order for p in doc)
    if max_words is not None:
        total = min(total, max_words)
    budgets = {"test": fractions[1] * total, "valid": fractions[0] * total, "train": total}
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    used = 0
    for document in order:
        words = sum(len(p.split()) for p in document)
        if used + words > total and counts["train"] > 0:
            break
        target = next((split for split in ("test", "valid") if counts[split] < budgets[split]), "train")
        splits[target].extend(document)
        counts[target] += words
        used += words
    return splits


def write_layout(splits: dict[str, list[str]], output: Path, vocab_size: int) -> dict[str, int]:
    """Write the raw and the tokenized layout; return the word count of each split."""
    raw_dir, token_dir = output / "wikitext-2-raw", output / "wikitext-2"
    raw_dir.mkdir(parents=True, exist_ok=True)
    token_dir.mkdir(parents=True, exist_ok=True)
    frequencies = Counter(word for line in splits["train"] for word in line.split())
    keep = {word for word, _ in frequencies.most_common(vocab_size)}
    counts = {}
    for split, lines in splits.items():
        (raw_dir / f"wiki.{split}.raw").write_text("".join(f" {line} \n" for line in lines), encoding="utf-8")
        tokens = [" ".join(w if w in keep else "<unk>" for w in line.split()) for line in lines]
        (token_dir / f"wiki.{split}.tokens").write_text(
            "".join(f" {line} \n" for line in tokens), encoding="utf-8"
        )
        counts[split] = sum(len(line.split()) for line in lines)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlbench_ray.data.make_corpus",
        description="Write plain-text files as a corpus in WikiText-2's layout (raw and tokenized).",
    )
    parser.add_argument("sources", nargs="+", type=Path, help="text files or folders of them")
    parser.add_argument("--output", type=Path, required=True, help="data root to write into")
    parser.add_argument("--pattern", default="*.txt", help="file pattern searched in folders (default *.txt)")
    parser.add_argument("--max-words", type=int, help="stop after this many words in all (default: all)")
    parser.add_argument("--vocab-size", type=int, default=33_000, help="words kept in the tokenized layout")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="share of words for validation")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of words for test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document shuffle")
    parser.add_argument(
        "--strip-rst", action="store_true", help="remove reStructuredText inline markup (roles, backquotes)"
    )
    args = parser.parse_args(argv)

    if not 0 < args.valid_fraction < 0.5 or not 0 < args.test_fraction < 0.5:
        parser.error("--valid-fraction and --test-fraction must lie between 0 and 0.5, for example 0.1")
    if args.vocab_size <= 0 or (args.max_words is not None and args.max_words <= 0):
        parser.error("--vocab-size and --max-words must be positive")

    try:
        documents = read_documents(args.sources, args.pattern, args.strip_rst)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(documents) < 3:
        print(
            f"error: found {len(documents)} document(s) with prose under "
            f"{', '.join(map(str, args.sources))}; need at least 3 (one per split). "
            f"Check --pattern ({args.pattern}).",
            file=sys.stderr,
        )
        return 2

    splits = split_documents(documents, (args.valid_fraction, args.test_fraction), args.max_words, args.seed)
    empty = [split for split, lines in splits.items() if not lines]
    if empty:
        print(
            f"error: split(s) {', '.join(empty)} got no text; add documents or raise --max-words",
            file=sys.stderr,
        )
        return 2
    counts = write_layout(splits, args.output, args.vocab_size)
    print(
        f"wrote {args.output}/wikitext-2 and {args.output}/wikitext-2-raw from {len(documents)} documents: "
        + ", ".join(f"{split} {count:,} words" for split, count in counts.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
