"""Text corpora: WikiText-2, tokenized (for AWD-LSTM) and raw (for the BERT-style masked LM).

Both use the layout of the public archives: `<root>/wikitext-2/wiki.{train,valid,test}.tokens` and
`<root>/wikitext-2-raw/wiki.{train,valid,test}.raw`. The driver calls `prepare_text_corpus` once,
before Ray starts: it downloads when allowed, verifies the SHA-1 checksums that GluonNLP publishes for
these files, and parses the corpus, so that a missing or corrupt corpus fails in the first seconds.
Workers then read the files themselves.

The raw variant is segmented into WordPiece subwords by Hugging Face `tokenizers`, trained on the
training split and cached under a key made of the training file's hash and the tokenizer settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mlbench_ray.config import DataSpec
from mlbench_ray.data.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class CorpusLayout:
    """Location of a corpus under the data root, its download address and its files' SHA-1."""

    label: str
    folder: str
    suffix: str
    archive_url: str
    archive_sha1: str
    files_sha1: dict[str, str]

    def path(self, root: Path, split: str) -> Path:
        return root / self.folder / f"wiki.{split}.{self.suffix}"


# Checksums as GluonNLP publishes them for the Salesforce archives.
LAYOUTS = {
    "wikitext2": CorpusLayout(
        label="WikiText-2",
        folder="wikitext-2",
        suffix="tokens",
        archive_url="https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
        archive_sha1="3c914d17d80b1459be871a5039ac23e752a53cbe",
        files_sha1={
            "train": "863f29c46ef9d167fff4940ec821195882fe29d1",
            "valid": "0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422",
            "test": "c7b8ce0aa086fb34dab808c5c49224211eb2b172",
        },
    ),
    "wikitext2_raw": CorpusLayout(
        label="WikiText-2 (raw)",
        folder="wikitext-2-raw",
        suffix="raw",
        archive_url="https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip",
        archive_sha1="3b6993c138fc61c95f7fffd900fef68f8411371d",
        files_sha1={
            "train": "d33faf256327882db0edc7c67cd098d1051a2112",
            "valid": "db78d4db83700cba1b1bf4a9381087043db2876d",
            "test": "6f1fe2054a940eebfc76b284b09680763b37f5ea",
        },
    ),
}


def sha1_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def _download(layout: CorpusLayout, root: Path) -> None:
    # torchvision's helpers fetch and unpack; the archive is checked against GluonNLP's SHA-1.
    # NOTE: not yet run here, because the machines this project is tested on have no internet access.
    from torchvision.datasets.utils import download_url, extract_archive

    root.mkdir(parents=True, exist_ok=True)
    name = layout.archive_url.rsplit("/", 1)[1]
    try:
        download_url(layout.archive_url, str(root), filename=name)
    except Exception as exc:  # network errors come in many types; the message carries the cause
        raise DataError(
            f"{layout.label} download from {layout.archive_url} into {root} failed: {exc}. Check network "
            f"access, or copy {layout.folder}/ there by hand and set data.download: false."
        ) from exc
    archive = root / name
    actual = sha1_of(archive)
    if actual != layout.archive_sha1:
        raise DataError(
            f"{layout.label}: the downloaded archive {archive} has SHA-1 {actual}, expected "
            f"{layout.archive_sha1}. Delete it and download again."
        )
    extract_archive(str(archive), str(root))


def corpus_files(spec: DataSpec) -> dict[str, Path]:
    layout = LAYOUTS[spec.dataset]
    return {split: layout.path(spec.root, split) for split in SPLITS}


def prepare_text_corpus(spec: DataSpec) -> dict[str, Any]:
    """Download (when allowed) and verify the corpus files; return what the results record.

    Raises DataError naming the missing or mismatching file and the fix.
    """
    layout = LAYOUTS[spec.dataset]
    files = corpus_files(spec)
    if not all(path.is_file() for path in files.values()):
        if spec.download:
            _download(layout, spec.root)
        elif not spec.root.is_dir():
            raise DataError(
                f"data root {spec.root} does not exist. Pass --data-root with the folder that contains "
                f"{layout.folder}/, or set data.download: true (--download) to fetch {layout.label} there."
            )
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"{layout.label}: {len(missing)} file(s) missing: {', '.join(missing)}. Set data.download: "
            f"true (or pass --download) to fetch them, or point --data-root at a folder that contains "
            f"{layout.folder}/wiki.{{train,valid,test}}.{layout.suffix}."
        )
    if spec.verify_checksums:
        for split, path in files.items():
            actual = sha1_of(path)
            if actual != layout.files_sha1[split]:
                raise DataError(
                    f"{layout.label}: checksum mismatch for {path}: SHA-1 {actual}, expected "
                    f"{layout.files_sha1[split]}. Delete the file and download again (data.download: "
                    f"true), or, for your own corpus in this layout, set data.verify_checksums: false "
                    f"(results then say 'not verified')."
                )
    counts = {}
    for split, path in files.items():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{layout.label}: {path} is not UTF-8 text: {exc}") from exc
        counts[split] = len(text.split())
        if counts[split] == 0:
            raise DataError(f"{layout.label}: {path} contains no words; it must hold the {split} split.")
    return {
        "name": spec.dataset,
        "label": layout.label,
        "root": str(spec.root.resolve()),
        "verification": "verified" if spec.verify_checksums else "not verified",
        "train_words": counts["train"],
        "valid_words": counts["valid"],
        "test_words": counts["test"],
    }


# --------------------------------------------------------------------------------------------------
# Tokenized corpus (AWD-LSTM): words split on whitespace, `<eos>` at the end of every line.


@dataclass
class TokenCorpus:
    """A word-level corpus as streams of token ids, with its vocabulary."""

    vocabulary: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


def load_token_corpus(spec: DataSpec) -> TokenCorpus:
    """Read the three splits; the vocabulary is every word in order of first appearance.

    This follows the AWD-LSTM reference code, which also adds `<eos>` after every line (empty lines
    included) and builds the vocabulary over all three splits (33,278 words for WikiText-2).
    """
    index: dict[str, int] = {}
    streams = {}
    for split, path in corpus_files(spec).items():
        ids: list[int] = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                for word in [*line.split(), EOS]:
                    ids.append(index.setdefault(word, len(index)))
        streams[split] = torch.tensor(ids, dtype=torch.long)
    return TokenCorpus(list(index), streams["train"], streams["valid"], streams["test"])


# --------------------------------------------------------------------------------------------------
# Raw corpus (BERT): WordPiece subwords and blocks of a fixed length.


def writable_cache_dir(beside: Path, name: str) -> Path:
    """Return `beside` as a cache folder when it is writable, else `name` under the user's cache folder."""
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlbench_ray" / name
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _cache_dir(spec: DataSpec) -> Path:
    """Tokenizer cache: next to the corpus when writable, else under the user's cache folder."""
    return writable_cache_dir(spec.root / LAYOUTS[spec.dataset].folder / "tokenizers", "tokenizers")


def tokenizer_key(train_file: Path, vocab_size: int, lowercase: bool) -> str:
    """Cache key: changes when the training text, the settings or the tokenizer library change."""
    import tokenizers

    settings = {
        "train_sha1": sha1_of(train_file),
        "vocab_size": vocab_size,
        "lowercase": lowercase,
        "tokenizers": tokenizers.__version__,
    }
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def wordpiece_tokenizer(spec: DataSpec, vocab_size: int, lowercase: bool) -> Any:
    """Load the cached WordPiece tokenizer for this corpus and these settings, or train and cache it."""
    from tokenizers import BertWordPieceTokenizer, Tokenizer

    train_file = corpus_files(spec)["train"]
    key = tokenizer_key(train_file, vocab_size, lowercase)
    path = _cache_dir(spec) / f"wordpiece-{key}.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    logger.info("training a WordPiece vocabulary of %d on %s", vocab_size, train_file)
    trainer = BertWordPieceTokenizer(lowercase=lowercase)
    trainer.train(
        [str(train_file)], vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    # Written under a unique name and renamed: ranks on one node may train at the same time.
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    trainer.save(str(partial))
    os.replace(partial, path)
    return Tokenizer.from_file(str(path))


def vocabulary_digest(tokenizer: Any) -> str:
    """Hash of a tokenizer's vocabulary, to check that every rank uses the same one."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha1(json.dumps(vocab).encode()).hexdigest()


def encode_blocks(tokenizer: Any, path: Path, block_len: int, keep_partial: bool) -> list[torch.Tensor]:
    """Encode the non-empty lines of `path`, concatenate them and cut blocks of `block_len` tokens.

    Each block is `[CLS] subwords [SEP]`. The last, shorter block is kept only when `keep_partial`
    (evaluation, where every token counts); training drops it.
    """
    with path.open(encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(lines, add_special_tokens=False):
        ids.extend(encoding.ids)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    body = block_len - 2
    blocks = []
    for start in range(0, len(ids), body):
        chunk = ids[start : start + body]
        if len(chunk) < body and not keep_partial:
            break
        blocks.append(torch.tensor([cls_id, *chunk, sep_id], dtype=torch.long))
    return blocks


def mask_tokens(
    ids: torch.Tensor,
    generator: torch.Generator,
    mask_id: int,
    first_regular_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply BERT's masking recipe and return (inputs, labels), with label -100 where nothing is predicted.

    Each regular token (id >= `first_regular_id`, so never [CLS], [SEP] or [PAD]) is chosen with
    probability `mask_prob`. Of the chosen tokens, 80% become [MASK], 10% a random regular token and
    10% stay unchanged; the model must predict all chosen tokens.
    """
    draw = torch.rand(ids.shape, generator=generator)
    chosen = (draw < mask_prob) & (ids >= first_regular_id)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    action = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    random_positions = chosen & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(first_regular_id, vocab_size, ids.shape, generator=generator)
    inputs[random_positions] = random_ids[random_positions]
    return inputs, labels
