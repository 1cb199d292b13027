"""Label Studio label configs → LabelConfig, and clear 422s for configs a segmenter cannot use."""

from __future__ import annotations

import pytest

from fixtures import LABEL_CONFIG
from tscore.errors import InvalidLabelConfig
from tscore.labelconfig import parse_label_config


def test_reads_the_standard_config():
    config = parse_label_config(LABEL_CONFIG)
    assert config.from_name == "label"
    assert config.to_name == "ts"
    assert config.data_key == "csv_url"
    assert config.time_column == "time"
    assert config.channels == ("a", "b")
    assert config.labels == ("Run", "Walk", "Fall")
    assert config.separator == ","
    assert config.time_format is None


def test_without_time_column_rows_are_indexed():
    config = parse_label_config(
        '<View><TimeSeries name="ts" value="$csv"><Channel column="x"/></TimeSeries>'
        '<TimeSeriesLabels name="seg" toName="ts"><Label value="A"/></TimeSeriesLabels></View>'
    )
    assert config.time_column is None
    assert config.data_key == "csv"
    assert config.from_name == "seg"
    assert config.channels == ("x",)


def test_several_channels_keep_config_order():
    config = parse_label_config(
        '<View><TimeSeriesLabels name="label" toName="ts"><Label value="Up"/><Label value="Down"/></TimeSeriesLabels>'
        '<TimeSeries name="ts" value="$csv_url" timeColumn="t">'
        '<Channel column="z"/><Channel column="x"/><Channel column="y"/><Channel column="w"/></TimeSeries></View>'
    )
    assert config.channels == ("z", "x", "y", "w")
    assert config.labels == ("Up", "Down")


def test_attributes_are_case_insensitive():
    config = parse_label_config(
        '<View><TimeSeriesLabels NAME="label" toname="ts"><Label VALUE="Run"/></TimeSeriesLabels>'
        '<TimeSeries name="ts" Value="$csv_url" timecolumn="stamp" TIMEFORMAT="%Y-%m-%d" Sep=";">'
        '<Channel Column="a"/></TimeSeries></View>'
    )
    assert config.time_column == "stamp"
    assert config.time_format == "%Y-%m-%d"
    assert config.separator == ";"
    assert config.channels == ("a",)
    assert config.labels == ("Run",)
    assert config.from_name == "label"


def test_uses_the_labels_control_that_points_at_the_series():
    config = parse_label_config(
        '<View><Labels name="other" toName="text"><Label value="Nope"/></Labels>'
        '<TimeSeriesLabels name="wrong" toName="missing"><Label value="X"/></TimeSeriesLabels>'
        '<TimeSeriesLabels name="right" toName="ts"><Label value="Y"/></TimeSeriesLabels>'
        '<TimeSeries name="ts" value="$csv_url"><Channel column="a"/></TimeSeries></View>'
    )
    assert config.from_name == "right"
    assert config.labels == ("Y",)


def test_label_alias_stands_in_for_a_missing_value():
    config = parse_label_config(
        '<View><TimeSeriesLabels name="label" toName="ts"><Label alias="R"/></TimeSeriesLabels>'
        '<TimeSeries name="ts" value="$csv_url"><Channel column="a"/></TimeSeries></View>'
    )
    assert config.labels == ("R",)


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        ('<View><Text name="t" value="$text"/><Labels name="l" toName="t"><Label value="A"/></Labels></View>', "<TimeSeries>"),
        ('<View><TimeSeries name="ts" value="$csv"><Channel column="a"/></TimeSeries></View>', "<TimeSeriesLabels>"),
        (
            '<View><TimeSeriesLabels name="label" toName="ts"></TimeSeriesLabels>'
            '<TimeSeries name="ts" value="$csv"><Channel column="a"/></TimeSeries></View>',
            "at least one <Label",
        ),
        ('<View><TimeSeries name="ts" value="$csv">', "not valid XML"),
        ("", "empty"),
        (
            '<View><TimeSeriesLabels name="label" toName="ts"><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="ts" value="csv_url"><Channel column="a"/></TimeSeries></View>',
            "must name a task data field",
        ),
        (
            '<View><TimeSeriesLabels name="label" toName="ts"><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="ts" value="$1csv"><Channel column="a"/></TimeSeries></View>',
            "must name a task data field",
        ),
        (
            '<View><TimeSeriesLabels name="label" toName="ts"><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="ts" value="$csv"></TimeSeries></View>',
            "<Channel",
        ),
        (
            '<View><TimeSeriesLabels name="label" toName="elsewhere"><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="ts" value="$csv"><Channel column="a"/></TimeSeries></View>',
            "toName",
        ),
        (
            '<View><TimeSeriesLabels name="label" toName="ts"><Label value="A"/><Label value="A"/></TimeSeriesLabels>'
            '<TimeSeries name="ts" value="$csv"><Channel column="a"/></TimeSeries></View>',
            "duplicate",
        ),
    ],
    ids=["no-timeseries", "no-labels-control", "no-labels", "bad-xml", "empty", "value-not-variable",
         "value-bad-variable", "no-channel", "toname-elsewhere", "duplicate-labels"],
)
def test_unusable_configs_are_422_naming_the_problem(xml, words):
    with pytest.raises(InvalidLabelConfig) as raised:
        parse_label_config(xml)
    assert raised.value.status_code == 422
    assert words in raised.value.message
