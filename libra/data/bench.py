"""Loading a Libra-Bench-style judging set: local files or the official set on the Hugging Face hub.

Rows are normalised to ``{id, subset, source_model, question, response, label}`` (label: True when the
response is correct), plus ``reference`` (the gold answer, which the verification template needs) and
``response_with_cot`` (the response before its chain of thought was removed) when the source has them.
Local files are the ones ``libra data v2v`` writes (.jsonl), or .json/.parquet with the same fields.
``meituan/Libra-Bench`` (or any hub id) goes through ``datasets.load_dataset`` for users who can reach the
hub; its columns are mapped through the aliases below, and a schema we do not recognise is a DataError
listing the columns found and the ones expected.

The official set (its dataset card): one file ``libra_bench.jsonl``, 3,740 rows with ``index``,
``question``, ``response``, ``label``, ``model``, ``reference``, ``subset``, ``response_with_cot``. A hub
dataset with one data file and no split configuration has the single split "train", so the default split
is the dataset's only one (or "test" when it has several, one of them "test").
"""

from __future__ import annotations

from pathlib import Path

from .jsonl import DataError, Record, SkipCounter, read_records, reject

HUB_ID = "meituan/Libra-Bench"
ALIASES = {
    "question": ("question", "problem", "prompt", "query"),
    "response": ("response", "answer", "output", "completion"),
    "label": ("label", "correctness", "is_correct", "correct"),
    "subset": ("subset", "source", "data_source", "dataset"),
    "source_model": ("source_model", "model", "generator", "policy"),
    "id": ("id", "uid", "index", "idx"),
}
OPTIONAL = {  # kept when present
    "reference": ("reference", "gold", "gold_answer", "reference_answer"),
    "response_with_cot": ("response_with_cot",),
}
_LABEL_WORDS = {"correct": True, "true": True, "yes": True, "1": True,
                "incorrect": False, "wrong": False, "false": False, "no": False, "0": False}


def _pick(rec: Record, name: str, required: bool):
    for alias in ALIASES[name]:
        if alias in rec.data and rec.data[alias] is not None:
            return rec.data[alias]
    if required:
        raise DataError(rec.path, rec.line, name,
                        f"no column for it (tried {', '.join(ALIASES[name])}; found {', '.join(sorted(rec.data))})")
    return None


def _label(rec: Record, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _LABEL_WORDS:
        return _LABEL_WORDS[value.strip().lower()]
    raise DataError(rec.path, rec.line, "label", f"not a correctness label: {value!r}")


def normalise(rec: Record) -> dict:
    """One judging row in our schema from a record of any supported layout."""
    question, response = _pick(rec, "question", True), _pick(rec, "response", True)
    for name, value in (("question", question), ("response", response)):
        if not isinstance(value, str):
            raise DataError(rec.path, rec.line, name, f"expected a string, got {type(value).__name__}")
    row = {
        "id": str(_first(rec, ALIASES["id"]) if _first(rec, ALIASES["id"]) is not None else rec.line),
        "subset": str(_pick(rec, "subset", False) or "all"),
        "source_model": str(_pick(rec, "source_model", False) or "unknown"),
        "question": question,
        "response": response,
        "label": _label(rec, _pick(rec, "label", True)),
    }
    for name, aliases in OPTIONAL.items():
        value = _first(rec, aliases)
        if value is not None:
            row[name] = str(value)
    return row


def _first(rec: Record, aliases: tuple[str, ...]):
    return next((rec.data[a] for a in aliases if rec.data.get(a) is not None), None)


def _hub_records(name: str, split: str | None):
    import datasets

    if split is None:
        splits = datasets.load_dataset(name)
        names = list(splits)
        split = names[0] if len(names) == 1 else "test" if "test" in names else None
        if split is None:
            raise DataError(name, None, None, f"the dataset has the splits {', '.join(names)}: choose one with --split")
        ds = splits[split]
    else:
        ds = datasets.load_dataset(name, split=split)
    for number, row in enumerate(ds, start=1):
        yield Record(dict(row), f"{name}[{split}]", number)


def load_bench(spec: str, *, split: str | None = None, skip_bad: SkipCounter | None = None,
               unique_ids: bool = False) -> list[dict]:
    """Rows of a local bench file, or of a hub dataset id such as ``meituan/Libra-Bench`` (``split``: default
    the dataset's only split, else "test"). ``unique_ids``, for commands that match rows by id: a row that
    repeats an earlier row's id is a DataError naming both (never skipped: neither row is bad alone)."""
    path = Path(spec)
    if path.exists():
        records = read_records(path, skip_bad=skip_bad)
    elif "/" in spec and not path.suffix:
        records = _hub_records(spec, split)
    else:
        raise DataError(spec, None, None, "no such file (and not a hub dataset id like meituan/Libra-Bench)")
    rows, first_at = [], {}
    for rec in records:
        try:
            row = normalise(rec)
        except DataError as err:
            reject(err, skip_bad)
            continue
        if unique_ids and row["id"] in first_at:
            column = next((a for a in ALIASES["id"] if rec.data.get(a) is not None), "id")
            raise rec.error(column, f"duplicate id {row['id']!r} (first at {first_at[row['id']]})")
        first_at.setdefault(row["id"], f"{rec.path}:{rec.line}")
        rows.append(row)
    return rows
