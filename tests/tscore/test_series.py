"""Task CSV → Series: numeric, date-time and indexed time, and a clear 422 for every bad CSV."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import LABEL_CONFIG, synthetic_csv
from tscore.errors import InvalidSeries
from tscore.labelconfig import parse_label_config
from tscore.series import read_series

CONFIG = parse_label_config(LABEL_CONFIG)
NO_TIME = parse_label_config(
    '<View><TimeSeriesLabels name="label" toName="ts"><Label value="Run"/></TimeSeriesLabels>'
    '<TimeSeries name="ts" value="$csv_url"><Channel column="a"/><Channel column="b"/></TimeSeries></View>'
)
DATED = parse_label_config(
    '<View><TimeSeriesLabels name="label" toName="ts"><Label value="Run"/></TimeSeriesLabels>'
    '<TimeSeries name="ts" value="$csv_url" timeColumn="when"><Channel column="a"/></TimeSeries></View>'
)


def test_numeric_time_column():
    text, _ = synthetic_csv(rows=50)
    series = read_series(text, CONFIG)
    assert len(series) == 50
    assert series.values.shape == (50, 2)
    assert series.values.dtype == np.float32
    assert series.time_value(3) == pytest.approx(0.3)
    assert isinstance(series.time_value(3), float)
    # Region bounds in time values → inclusive rows.
    assert series.row_range(0.2, 0.5) == (2, 5)
    assert series.row_range(0.5, 0.2) == (2, 5)
    # An instant between two samples maps to the nearest row, never to nothing.
    assert series.row_range(0.31, 0.31) == (3, 3)
    assert series.row_range(0.38, 0.38) == (4, 4)


def test_integer_time_values_stay_integers():
    series = read_series("time,a,b\n10,1,2\n20,3,4\n30,5,6\n", CONFIG)
    assert series.time_value(1) == 20
    assert isinstance(series.time_value(1), int)
    assert series.values.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_datetime_time_column_keeps_the_csvs_own_strings():
    rows = [f"2024-03-01 12:00:{s:02d}" for s in range(10)]
    text = "when,a\n" + "".join(f"{r},{i}\n" for i, r in enumerate(rows))
    series = read_series(text, DATED)
    # Regions must come back in the CSV's spelling, not as epoch seconds or ISO rewrites.
    assert [series.time_value(i) for i in range(10)] == rows
    assert series.row_range("2024-03-01 12:00:02", "2024-03-01 12:00:05") == (2, 5)
    assert np.diff(series.time_keys).tolist() == [1.0] * 9


def test_iso_datetimes_with_zone():
    rows = ["2024-03-01T12:00:00Z", "2024-03-01T12:00:00.5Z", "2024-03-01T12:00:01Z"]
    series = read_series("when,a\n" + "".join(f"{r},1\n" for r in rows), DATED)
    assert series.time_value(1) == "2024-03-01T12:00:00.5Z"
    assert series.row_range("2024-03-01T12:00:00.5Z", "2024-03-01T12:00:00.5Z") == (1, 1)


def test_explicit_time_format():
    config = parse_label_config(
        '<View><TimeSeriesLabels name="label" toName="ts"><Label value="Run"/></TimeSeriesLabels>'
        '<TimeSeries name="ts" value="$csv_url" timeColumn="when" timeFormat="%d/%m/%Y"><Channel column="a"/></TimeSeries></View>'
    )
    series = read_series("when,a\n02/01/2024,1\n01/02/2024,2\n", config)
    # Day-first: 2 January comes before 1 February.
    assert series.time_value(0) == "02/01/2024"
    assert series.values[:, 0].tolist() == [1, 2]


def test_no_time_column_uses_the_row_index():
    series = read_series("a,b\n1,2\n3,4\n5,6\n", NO_TIME)
    assert series.time_keys.tolist() == [0.0, 1.0, 2.0]
    assert series.time_value(2) == 2
    assert isinstance(series.time_value(2), int)
    assert series.row_range(1, 2) == (1, 2)


def test_missing_channel_is_422_naming_it():
    with pytest.raises(InvalidSeries) as raised:
        read_series("time,a\n0,1\n1,2\n", CONFIG)
    assert raised.value.status_code == 422
    assert "'b'" in raised.value.message


def test_missing_time_column_is_422_naming_it():
    with pytest.raises(InvalidSeries) as raised:
        read_series("t,a,b\n0,1,2\n", CONFIG)
    assert "'time'" in raised.value.message


def test_non_numeric_value_names_column_and_row():
    with pytest.raises(InvalidSeries) as raised:
        read_series("time,a,b\n0,1,2\n1,2,3\n2,oops,4\n", CONFIG)
    message = raised.value.message
    assert "'a'" in message and "'oops'" in message and "row 2" in message


def test_gaps_inside_a_channel_are_filled_from_neighbours():
    series = read_series("time,a,b\n0,1,2\n1,,3\n2,5,\n", CONFIG)
    assert series.values.tolist() == [[1, 2], [1, 3], [5, 3]]


def test_a_channel_without_any_number_is_refused():
    with pytest.raises(InvalidSeries, match="'b' has no numeric values"):
        read_series("time,a,b\n0,1,\n1,2,\n", CONFIG)


@pytest.mark.parametrize("text", ["", "   \n", b""])
def test_empty_csv(text):
    with pytest.raises(InvalidSeries, match="empty"):
        read_series(text, CONFIG)


def test_header_only():
    with pytest.raises(InvalidSeries, match="header but no rows"):
        read_series("time,a,b\n", CONFIG)


def test_too_many_rows():
    text, _ = synthetic_csv(rows=30)
    assert len(read_series(text, CONFIG, max_rows=30)) == 30
    with pytest.raises(InvalidSeries, match="more than 29 rows"):
        read_series(text, CONFIG, max_rows=29)


def test_unsorted_time_is_sorted_with_its_values():
    series = read_series("time,a,b\n2,20,200\n0,0,0\n1,10,100\n", CONFIG)
    assert series.time_keys.tolist() == [0.0, 1.0, 2.0]
    assert [series.time_value(i) for i in range(3)] == [0, 1, 2]
    assert series.values[:, 1].tolist() == [0, 100, 200]


def test_empty_time_value_is_refused():
    with pytest.raises(InvalidSeries, match="'time' has an empty value at row 1"):
        read_series("time,a,b\n0,1,2\n,1,2\n2,1,2\n", CONFIG)


def test_time_column_neither_number_nor_date():
    with pytest.raises(InvalidSeries, match="neither numeric nor date-time"):
        read_series("when,a\nmonday,1\ntuesday,2\n", DATED)


def test_bytes_with_bom_and_padded_header():
    series = read_series("\ufefftime, a ,b\n0,1,2\n".encode(), CONFIG)
    assert series.values.tolist() == [[1, 2]]


def test_custom_separator():
    config = parse_label_config(LABEL_CONFIG.replace('timeColumn="time"', 'timeColumn="time" sep=";"'))
    series = read_series("time;a;b\n0;1.5;2\n", config)
    assert series.values.tolist() == [[1.5, 2]]


def test_time_value_that_is_no_time():
    series = read_series("time,a,b\n0,1,2\n", CONFIG)
    with pytest.raises(InvalidSeries, match="not a number or a date-time"):
        series.row_range("yesterday-ish", 0)
