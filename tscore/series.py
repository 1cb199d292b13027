"""Task CSV → series: the time values as the CSV spells them plus a float32 ``[T, C]`` matrix."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tscore.errors import InvalidSeries
from tscore.labelconfig import LabelConfig

#: Default cap on rows per series; a task beyond it gets a clear 422 instead of exhausting memory.
DEFAULT_MAX_ROWS = 2_000_000


@dataclass(frozen=True)
class Series:
    """One task's time series.

    Attributes:
        values: ``[T, C]`` float32 matrix, channels in label-config order.
        time_keys: ``[T]`` float64 sort keys of the time column (seconds for date-times,
            the numbers themselves for numeric columns, the row index when there is none).
        time_labels: the time column as it appears in the CSV (numbers or strings), used to
            report region bounds in the CSV's own time values.
    """

    values: np.ndarray
    time_keys: np.ndarray
    time_labels: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def time_value(self, row: int) -> Any:
        """The CSV's own time value of ``row`` as a JSON-serialisable scalar."""
        value = self.time_labels[row]
        return value.item() if isinstance(value, np.generic) else value

    def row_range(self, start: Any, end: Any) -> tuple[int, int]:
        """Inclusive row range covered by a region ``[start, end]`` in CSV time values.

        An instant (``start == end``) or a region between two samples maps to the nearest row,
        so a region is never lost for falling between samples.
        """
        lo, hi = sorted((self.key_of(start), self.key_of(end)))
        first = int(np.searchsorted(self.time_keys, lo, side="left"))
        last = int(np.searchsorted(self.time_keys, hi, side="right")) - 1
        if first > last:
            nearest = self.nearest_row((lo + hi) / 2)
            return nearest, nearest
        return first, last

    def nearest_row(self, key: float) -> int:
        """Index of the row whose time key is closest to ``key``."""
        index = int(np.searchsorted(self.time_keys, key))
        if index <= 0:
            return 0
        if index >= len(self):
            return len(self) - 1
        before, after = self.time_keys[index - 1], self.time_keys[index]
        return index - 1 if key - before <= after - key else index

    def key_of(self, value: Any) -> float:
        """Sort key of one time value given as a number or as the CSV's date-time string."""
        if isinstance(value, bool):
            raise InvalidSeries(f"time value {value!r} is not a number or a date-time")
        if isinstance(value, (int, float, np.number)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
        try:
            return _datetime_keys(pd.Series([value]), None)[0]
        except (ValueError, TypeError) as exc:
            raise InvalidSeries(f"time value {value!r} is not a number or a date-time") from exc


def read_series(data: bytes | str, config: LabelConfig, *, max_rows: int = DEFAULT_MAX_ROWS) -> Series:
    """Parse a task CSV into a :class:`Series` following the label config.

    Missing cells inside a channel are filled from their neighbours; any other
    non-numeric value is an error naming the column and row.

    Raises:
        InvalidSeries: the CSV is empty, unparseable, too long, lacks the time column or a
            channel, or holds non-numeric channel values.
    """
    raw = data.encode() if isinstance(data, str) else data
    fast = _read_plain_numeric(raw.removeprefix(b"\xef\xbb\xbf"), config, max_rows)
    if fast is not None:
        return fast
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    if not text.strip():
        raise InvalidSeries("the CSV is empty")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=config.separator, nrows=max_rows + 1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, ValueError) as exc:
        raise InvalidSeries(f"the CSV cannot be parsed: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise InvalidSeries("the CSV has a header but no rows")
    if len(frame) > max_rows:
        raise InvalidSeries(f"the CSV has more than {max_rows} rows")

    missing = [c for c in (*config.channels, *filter(None, [config.time_column])) if c not in frame.columns]
    if missing:
        raise InvalidSeries(
            f"the CSV lacks column(s) {', '.join(map(repr, missing))}; it has {list(frame.columns)}"
        )
    values = np.empty((len(frame), len(config.channels)), dtype=np.float32)
    for index, channel in enumerate(config.channels):
        values[:, index] = _numeric_channel(frame[channel], channel)

    if config.time_column is None:
        keys = np.arange(len(frame), dtype=np.float64)
        labels = np.arange(len(frame))
    else:
        column = frame[config.time_column]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            if column.isna().any():
                raise InvalidSeries(
                    f"time column {config.time_column!r} has an empty value at row {int(column.isna().to_numpy().argmax())}"
                )
            keys = column.to_numpy(dtype=np.float64)
            labels = column.to_numpy()
        else:
            labels = column.astype(str).to_numpy()
            try:
                keys = _datetime_keys(column, config.time_format)
            except (ValueError, TypeError) as exc:
                raise InvalidSeries(
                    f"time column {config.time_column!r} is neither numeric nor date-time: {exc}"
                ) from exc
        if len(keys) > 1 and np.any(np.diff(keys) < 0):
            order = np.argsort(keys, kind="stable")
            keys, labels, values = keys[order], labels[order], values[order]
    return Series(values=values, time_keys=keys, time_labels=labels)


def _read_plain_numeric(raw: bytes, config: LabelConfig, max_rows: int) -> Series | None:
    """Fast path for the common case: an all-numeric, complete, sorted CSV without quoting.

    ``numpy.loadtxt`` parses a 1000-row task in a third of pandas' time, which is most of the
    gateway's own cost per prediction. Anything unusual returns None and takes the pandas path,
    which also produces the precise error messages.
    """
    end_of_header = raw.find(b"\n")
    if end_of_header < 0:
        return None
    header = raw[:end_of_header].decode("utf-8", errors="replace")
    if '"' in header or "'" in header:
        return None
    columns = [c.strip() for c in header.rstrip("\r").split(config.separator)]
    wanted = ([config.time_column] if config.time_column else []) + list(config.channels)
    if any(name not in columns for name in wanted) or len(set(columns)) != len(columns):
        return None
    if not raw[end_of_header + 1 :].strip() or raw.count(b"\n", end_of_header + 1) > max_rows:
        return None
    body = io.BytesIO(raw)
    body.seek(end_of_header + 1)
    try:
        matrix = np.loadtxt(body, delimiter=config.separator, usecols=[columns.index(n) for n in wanted], dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    if len(matrix) == 0 or not np.isfinite(matrix).all():
        return None
    values = matrix[:, 1:] if config.time_column else matrix
    if config.time_column:
        keys = np.ascontiguousarray(matrix[:, 0])
        if len(keys) > 1 and np.any(np.diff(keys) < 0):
            return None
        labels = keys.astype(np.int64) if np.all(keys == np.round(keys)) and np.abs(keys).max() < 2**53 else keys
    else:
        keys = np.arange(len(matrix), dtype=np.float64)
        labels = np.arange(len(matrix))
    return Series(values=values.astype(np.float32), time_keys=keys, time_labels=labels)


def _numeric_channel(column: pd.Series, name: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        coerced = pd.to_numeric(column, errors="coerce")
        bad = coerced.isna() & column.notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise InvalidSeries(
                f"channel {name!r} has a non-numeric value {column.iloc[row]!r} at row {row}"
            )
        column = coerced
    array = column.to_numpy(dtype=np.float64)
    if not np.isfinite(array).all():
        finite = np.isfinite(array)
        if not finite.any():
            raise InvalidSeries(f"channel {name!r} has no numeric values")
        # Gaps are filled from neighbouring samples, as a plotted series would show them.
        array = pd.Series(np.where(finite, array, np.nan)).ffill().bfill().to_numpy()
    return array


def _datetime_keys(column: pd.Series, time_format: str | None) -> np.ndarray:
    parsed = pd.to_datetime(column, format=time_format, utc=True) if time_format else pd.to_datetime(
        column, utc=True, format="mixed"
    )
    if parsed.isna().any():
        raise ValueError(f"unparseable date-time at row {int(parsed.isna().to_numpy().argmax())}")
    return parsed.astype("int64").to_numpy(dtype=np.float64) / 1e9
