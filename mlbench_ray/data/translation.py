"""Parallel English-German text for the translation tasks (WMT16 for GNMT, WMT17 for the Transformer).

Layout, one sentence a line, line i of the English file translating line i of the German file:
`<root>/wmt16-en-de/{train,valid,test}.{en,de}` (and `wmt17-en-de/` likewise). The test split is
newstest2014 (3,003 lines in its full form; sacrebleu's `wmt14` set is a 2,737-line filtered version),
the validation split newstest2013. Text is raw (not Moses-tokenized): BLEU is computed by sacrebleu on
detokenized output against these lines.

The driver calls `prepare_parallel_corpus` once, before Ray starts: it downloads when allowed, checks
that the files exist, are UTF-8, pair up line for line and that the test set has the expected line
count. It then learns the shared subword vocabulary (BPE by Hugging Face `tokenizers`) and encodes the
splits, both cached under keys that change with the text and the settings, so workers only load them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlbench_ray.config import DataSpec
from mlbench_ray.data.errors import DataError
from mlbench_ray.data.text import writable_cache_dir

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
LANGUAGES = ("en", "de")
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
NEWSTEST2014_LINES = 3003


@dataclass(frozen=True)
class TrainingArchive:
    """A public archive of parallel training text and the English and German files inside it."""

    url: str
    english: str
    german: str


@dataclass(frozen=True)
class ParallelLayout:
    """Location of a WMT corpus under the data root, and the sources of its parts."""

    label: str
    folder: str
    archives: tuple[TrainingArchive, ...]
    # sacrebleu test-set names of the validation and test splits.
    valid_set: str = "wmt13"
    test_set: str = "wmt14/full"


_EUROPARL = TrainingArchive(
    "https://www.statmt.org/europarl/v7/de-en.tgz", "europarl-v7.de-en.en", "europarl-v7.de-en.de"
)
_COMMONCRAWL = TrainingArchive(
    "https://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz",
    "commoncrawl.de-en.en",
    "commoncrawl.de-en.de",
)
LAYOUTS = {
    "wmt16": ParallelLayout(
        label="WMT16 en-de",
        folder="wmt16-en-de",
        archives=(
            _EUROPARL,
            _COMMONCRAWL,
            TrainingArchive(
                "https://data.statmt.org/wmt16/translation-task/training-parallel-nc-v11.tgz",
                "news-commentary-v11.de-en.en",
                "news-commentary-v11.de-en.de",
            ),
        ),
    ),
    "wmt17": ParallelLayout(
        label="WMT17 en-de",
        folder="wmt17-en-de",
        archives=(
            _EUROPARL,
            _COMMONCRAWL,
            TrainingArchive(
                "https://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz",
                "news-commentary-v12.de-en.en",
                "news-commentary-v12.de-en.de",
            ),
            TrainingArchive(
                "https://data.statmt.org/wmt17/translation-task/rapid2016.tgz",
                "rapid2016.de-en.en",
                "rapid2016.de-en.de",
            ),
        ),
    ),
}


def split_files(spec: DataSpec) -> dict[str, dict[str, Path]]:
    """Paths of every split's English and German file."""
    folder = spec.root / LAYOUTS[spec.dataset].folder
    return {split: {lang: folder / f"{split}.{lang}" for lang in LANGUAGES} for split in SPLITS}


def sha1_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def read_lines(path: Path) -> list[str]:
    """Read the file's lines without line ends; raise DataError for text that is not UTF-8."""
    try:
        with path.open(encoding="utf-8", newline="\n") as handle:
            return [line.rstrip("\n").rstrip("\r") for line in handle]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc}. Convert it with iconv -t UTF-8.") from exc


# --------------------------------------------------------------------------------------------------
# Download


def extract_training_text(archives: list[tuple[TrainingArchive, Path]], folder: Path) -> None:
    """Concatenate the English and German files of the downloaded archives into train.en/train.de."""
    outputs = {lang: (folder / f"train.{lang}.partial").open("w", encoding="utf-8") for lang in LANGUAGES}
    try:
        for archive, path in archives:
            with tarfile.open(path) as tar:
                members = {Path(member.name).name: member for member in tar.getmembers() if member.isfile()}
                for lang, name in (("en", archive.english), ("de", archive.german)):
                    if name not in members:
                        raise DataError(
                            f"{path} (from {archive.url}) has no file {name}. Delete the archive and "
                            f"download again, or place train.{{en,de}} in {folder} by hand."
                        )
                    source = tar.extractfile(members[name])
                    assert source is not None  # a regular file
                    for raw in source:
                        outputs[lang].write(raw.decode("utf-8", errors="replace").rstrip("\r\n") + "\n")
    except BaseException:
        for handle in outputs.values():
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
        raise
    for handle in outputs.values():
        handle.close()
    for lang in LANGUAGES:
        os.replace(folder / f"train.{lang}.partial", folder / f"train.{lang}")


def _fetch(url: str, target: Path) -> None:
    partial = target.with_suffix(target.suffix + ".partial")
    with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as handle:
        shutil.copyfileobj(response, handle)
    os.replace(partial, target)


def _write_test_set(test_set: str, folder: Path, split: str) -> None:
    """Write a WMT test set as plain lines, through sacrebleu, which downloads and checks it."""
    from sacrebleu.utils import get_reference_files, get_source_file

    source = Path(get_source_file(test_set, "en-de"))
    reference = Path(get_reference_files(test_set, "en-de")[0])
    shutil.copyfile(source, folder / f"{split}.en")
    shutil.copyfile(reference, folder / f"{split}.de")


def download_corpus(layout: ParallelLayout, folder: Path) -> None:
    """Fetch the training archives from statmt.org and newstest2013/2014 through sacrebleu."""
    # NOTE: not yet run here, because the machines this project is tested on have no internet access.
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not all((folder / f"train.{lang}").is_file() for lang in LANGUAGES):
            downloaded = []
            for archive in layout.archives:
                path = folder / archive.url.rsplit("/", 1)[1]
                if not path.is_file():
                    logger.info("downloading %s", archive.url)
                    _fetch(archive.url, path)
                downloaded.append((archive, path))
            extract_training_text(downloaded, folder)
        for split, test_set in (("valid", layout.valid_set), ("test", layout.test_set)):
            if not all((folder / f"{split}.{lang}").is_file() for lang in LANGUAGES):
                _write_test_set(test_set, folder, split)
    except DataError:
        raise
    except Exception as exc:  # network errors come in many types; the message carries the cause
        raise DataError(
            f"{layout.label} download into {folder} failed: {exc}. Check network access, or copy "
            f"{{train,valid,test}}.{{en,de}} there by hand and set data.download: false."
        ) from exc


# --------------------------------------------------------------------------------------------------
# Checks on the driver


def prepare_parallel_corpus(spec: DataSpec, eval_split: str, test_lines: int | None) -> dict[str, Any]:
    """Download (when allowed) and check the corpus; return what the results record.

    Raises DataError naming the file, the numbers and the fix.
    """
    layout = LAYOUTS[spec.dataset]
    folder = spec.root / layout.folder
    files = split_files(spec)
    needed = {"train", eval_split}
    paths = [files[split][lang] for split in sorted(needed) for lang in LANGUAGES]
    if not all(path.is_file() for path in paths):
        if spec.download:
            download_corpus(layout, folder)
        elif not spec.root.is_dir():
            raise DataError(
                f"data root {spec.root} does not exist. Pass --data-root with the folder that contains "
                f"{layout.folder}/, or set data.download: true (--download) to fetch {layout.label} there."
            )
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DataError(
            f"{layout.label}: {len(missing)} file(s) missing: {', '.join(missing)}. Set data.download: "
            f"true (or pass --download) to fetch them, or point --data-root at a folder that contains "
            f"{layout.folder}/{{train,{eval_split}}}.{{en,de}}, one sentence a line."
        )
    counts: dict[str, int] = {}
    for split in sorted(needed):
        lengths = {lang: len(read_lines(files[split][lang])) for lang in LANGUAGES}
        if lengths["en"] != lengths["de"]:
            raise DataError(
                f"{layout.label}: {files[split]['en']} has {lengths['en']} lines but "
                f"{files[split]['de']} has {lengths['de']}; line i of one must translate line i of the other."
            )
        if lengths["en"] == 0:
            raise DataError(f"{layout.label}: {files[split]['en']} is empty; it must hold the {split} split.")
        counts[split] = lengths["en"]
    if eval_split == "test" and test_lines is not None and counts["test"] != test_lines:
        filtered = " (sacrebleu's filtered wmt14 set; use wmt14/full)" if counts["test"] == 2737 else ""
        raise DataError(
            f"{layout.label}: {files['test']['en']} has {counts['test']} lines{filtered}, but the test set "
            f"must have {test_lines} (the full newstest2014 has {NEWSTEST2014_LINES}). Replace "
            f"test.en/test.de with the full newstest2014, or, to score another test set on purpose, set "
            f"task_options.test_lines to its line count or null; the table then labels it as custom."
        )
    custom_test = eval_split != "test" or test_lines != NEWSTEST2014_LINES
    return {
        "name": spec.dataset,
        "label": layout.label,
        "root": str(spec.root.resolve()),
        "verification": "test-set line count checked" if spec.verify_checksums else "not verified",
        "eval_split": eval_split,
        "custom_test_set": custom_test,
        "train_pairs": counts["train"],
        f"{eval_split}_pairs": counts[eval_split],
    }


# --------------------------------------------------------------------------------------------------
# Subwords: one BPE vocabulary shared by English and German


def _cache_dir(spec: DataSpec) -> Path:
    """Return the subword cache folder: next to the corpus when writable, else in the user's cache."""
    return writable_cache_dir(spec.root / LAYOUTS[spec.dataset].folder / "subwords", "subwords")


def _key(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def bpe_key(spec: DataSpec, merges: int) -> str:
    """Return the BPE model's cache key, which changes with the training text, the merges or the library."""
    import tokenizers

    files = split_files(spec)["train"]
    return _key(
        {
            "train_sha1": [sha1_of(files[lang]) for lang in LANGUAGES],
            "merges": merges,
            "tokenizers": tokenizers.__version__,
        }
    )


def _alphabet_size(paths: list[Path]) -> int:
    characters: set[str] = set()
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                characters.update(line.strip())
    characters.discard(" ")
    return len(characters) + 1  # and the word-start marker


def bpe_tokenizer(spec: DataSpec, merges: int) -> Any:
    """Load the cached shared BPE model of this corpus, or learn it with `merges` merges and cache it.

    Words are marked with a leading `▁` (the Metaspace scheme), so decoding restores the text's
    spaces exactly and BLEU is computed on detokenized output.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    path = _cache_dir(spec) / f"bpe-{bpe_key(spec, merges)}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    files = split_files(spec)["train"]
    inputs = [str(files[lang]) for lang in LANGUAGES]
    logger.info("learning %d BPE merges on %s", merges, ", ".join(inputs))
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    vocab_size = len(SPECIAL_TOKENS) + _alphabet_size([files[lang] for lang in LANGUAGES]) + merges
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train(inputs, trainer)
    # Written under a unique name and renamed: ranks on one node may learn it at the same time.
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    tokenizer.save(str(partial))
    os.replace(partial, path)
    return Tokenizer.from_file(str(path))


def bpe_merges(tokenizer: Any) -> int:
    """Return the number of merges in the BPE model."""
    return len(json.loads(tokenizer.to_str())["model"]["merges"])


def vocabulary_digest(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha1(json.dumps(vocab).encode()).hexdigest()


@dataclass
class EncodedPairs:
    """Sentence pairs as subword ids, stored flat: pair i is `source[source_offsets[i]:...[i + 1]]`."""

    source: torch.Tensor
    source_offsets: torch.Tensor
    target: torch.Tensor
    target_offsets: torch.Tensor

    def __len__(self) -> int:
        return self.source_offsets.numel() - 1

    def source_lengths(self) -> torch.Tensor:
        return self.source_offsets[1:] - self.source_offsets[:-1]

    def target_lengths(self) -> torch.Tensor:
        return self.target_offsets[1:] - self.target_offsets[:-1]

    def pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        src = self.source[self.source_offsets[index] : self.source_offsets[index + 1]]
        tgt = self.target[self.target_offsets[index] : self.target_offsets[index + 1]]
        return src, tgt

    def select(self, indices: list[int]) -> EncodedPairs:
        pairs = [self.pair(i) for i in indices]
        return _pack([p[0] for p in pairs], [p[1] for p in pairs])


def _pack(sources: list[torch.Tensor], targets: list[torch.Tensor]) -> EncodedPairs:
    def flat(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([0, *(p.numel() for p in parts)], dtype=torch.long)
        data = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int32)
        return data.to(torch.int32), lengths.cumsum(0)

    source, source_offsets = flat(sources)
    target, target_offsets = flat(targets)
    return EncodedPairs(source, source_offsets, target, target_offsets)


def encode_split(spec: DataSpec, tokenizer: Any, split: str, max_length: int | None) -> EncodedPairs:
    """Encode a split's pairs as subword ids (no special tokens) and cache them.

    With `max_length` (training only), pairs longer than that many subwords on either side, and pairs
    with an empty side, are dropped.
    """
    files = split_files(spec)[split]
    key = _key(
        {
            "files_sha1": [sha1_of(files[lang]) for lang in LANGUAGES],
            "vocabulary": vocabulary_digest(tokenizer),
            "max_length": max_length,
        }
    )
    path = _cache_dir(spec) / f"{split}-{key}.pt"
    if path.is_file():
        return EncodedPairs(**torch.load(path, weights_only=True))
    lines = {lang: read_lines(files[lang]) for lang in LANGUAGES}
    sources, targets = [], []
    encoded = {lang: tokenizer.encode_batch(lines[lang], add_special_tokens=False) for lang in LANGUAGES}
    for en, de in zip(encoded["en"], encoded["de"], strict=True):
        if max_length is not None and not (0 < len(en.ids) <= max_length and 0 < len(de.ids) <= max_length):
            continue
        sources.append(torch.tensor(en.ids, dtype=torch.int32))
        targets.append(torch.tensor(de.ids, dtype=torch.int32))
    pairs = _pack(sources, targets)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(pairs.__dict__, partial)
    os.replace(partial, path)
    return pairs
