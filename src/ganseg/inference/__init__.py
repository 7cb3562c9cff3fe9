"""Inference shared by every stage: :func:`segment_probabilities` segments whole images at
their native size with one sliding window (validation during training, evaluate, predict);
:func:`segment_each` runs it over a list of images of mixed sizes; :func:`check_memory` is its memory guard, for callers that check every input up front."""

from ganseg.inference.sliding_window import check_memory, segment_each, segment_probabilities

__all__ = ["check_memory", "segment_each", "segment_probabilities"]
