"""Label Studio label config → a typed description of a time-series segmentation task."""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree import ElementTree

from tscore.errors import InvalidLabelConfig

_VARIABLE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class LabelConfig:
    """What the backend needs to know about a project's labelling interface.

    Attributes:
        from_name: ``name`` of the ``<TimeSeriesLabels>`` control (regions' ``from_name``).
        to_name: ``name`` of the ``<TimeSeries>`` object (regions' ``to_name``).
        data_key: task data key holding the CSV (``$csv_url`` → ``csv_url``).
        time_column: the CSV's time column, or ``None`` when rows are indexed.
        channels: channel columns in config order; they are the model's input features.
        labels: label values in config order; class ``i + 1`` is ``labels[i]``, 0 is background.
        separator: CSV field separator (``sep`` attribute, default ``,``).
        time_format: ``timeFormat`` attribute when the time column holds date-times.
    """

    from_name: str
    to_name: str
    data_key: str
    time_column: str | None
    channels: tuple[str, ...]
    labels: tuple[str, ...]
    separator: str = ","
    time_format: str | None = None


def parse_label_config(xml: str) -> LabelConfig:
    """Parse a Label Studio label config.

    The first ``<TimeSeriesLabels>`` whose ``toName`` names a ``<TimeSeries>`` is used.

    Raises:
        InvalidLabelConfig: when the XML is malformed or lacks the tags (TimeSeries,
            TimeSeriesLabels with at least one Label, at least one Channel).
    """
    if not xml or not xml.strip():
        raise InvalidLabelConfig("label config is empty")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise InvalidLabelConfig(f"label config is not valid XML: {exc}") from exc

    series_tags = {_attr(t, "name"): t for t in root.iter() if _tag(t) == "timeseries"}
    if not series_tags:
        raise InvalidLabelConfig("label config has no <TimeSeries> tag")
    controls = [t for t in root.iter() if _tag(t) == "timeserieslabels"]
    if not controls:
        raise InvalidLabelConfig("label config has no <TimeSeriesLabels> tag")
    for control in controls:
        to_name = _attr(control, "toName")
        if to_name in series_tags:
            return _describe(control, series_tags[to_name])
    raise InvalidLabelConfig(
        "no <TimeSeriesLabels> points (toName) at a <TimeSeries> of this config"
    )


def _describe(control: ElementTree.Element, series: ElementTree.Element) -> LabelConfig:
    labels = tuple(
        _attr(label, "value") or _attr(label, "alias")
        for label in control
        if _tag(label) == "label"
    )
    if not labels or not all(labels):
        raise InvalidLabelConfig("<TimeSeriesLabels> needs at least one <Label value=...>")
    if len(set(labels)) != len(labels):
        raise InvalidLabelConfig("<TimeSeriesLabels> has duplicate label values")
    channels = tuple(_attr(c, "column") for c in series.iter() if _tag(c) == "channel")
    if not channels or not all(channels):
        raise InvalidLabelConfig("<TimeSeries> needs at least one <Channel column=...>")
    value = _attr(series, "value") or ""
    match = _VARIABLE.match(value.strip())
    if not match:
        raise InvalidLabelConfig(
            f"<TimeSeries value={value!r}> must name a task data field such as $csv_url"
        )
    return LabelConfig(
        from_name=_attr(control, "name") or "label",
        to_name=_attr(series, "name"),
        data_key=match.group(1),
        time_column=_attr(series, "timeColumn") or None,
        channels=channels,
        labels=labels,
        separator=_attr(series, "sep") or ",",
        time_format=_attr(series, "timeFormat") or None,
    )


def _tag(element: ElementTree.Element) -> str:
    return element.tag.lower() if isinstance(element.tag, str) else ""


def _attr(element: ElementTree.Element, name: str) -> str:
    # LS accepts attributes in any case (timeColumn, timecolumn).
    for key, value in element.attrib.items():
        if key.lower() == name.lower():
            return value
    return ""
