"""Read and write segment annotations as JAMS, and convert other formats to JAMS."""

from .beats import beats_to_annotation, read_beats
from .harmonix import harmonix_to_jams, read_harmonix_durations
from .io import AnnotationExistsError, save_jams_atomic, write_estimation_jams
from .lab import csv_to_jams, lab_to_jams
from .pop909 import check_pop909_alignment, parse_pop909_label, pop909_song_to_jams
from .salami import salami_txt_to_jams
from .segments import (
    list_segment_annotations,
    read_segments,
    segments_to_jams,
    snap_segments,
    validate_segments,
)

__all__ = [
    "AnnotationExistsError",
    "beats_to_annotation",
    "check_pop909_alignment",
    "csv_to_jams",
    "harmonix_to_jams",
    "lab_to_jams",
    "list_segment_annotations",
    "parse_pop909_label",
    "pop909_song_to_jams",
    "read_beats",
    "read_harmonix_durations",
    "read_segments",
    "salami_txt_to_jams",
    "save_jams_atomic",
    "segments_to_jams",
    "snap_segments",
    "validate_segments",
    "write_estimation_jams",
]
