"""Length-sorted batches and padding, as every model that runs texts in batches uses them."""

from __future__ import annotations

from types import SimpleNamespace

from sftselect.batching import length_batches, longest_first, pad_batch, pad_token_id


def test_length_batches_keep_to_the_batch_size_and_the_token_budget():
    lengths = [300, 120, 100, 90, 10, 10, 10, 10, 10]
    batches = list(length_batches(range(len(lengths)), lengths, batch_size=3, max_tokens=250))
    assert batches == [[0], [1, 2], [3, 4], [5, 6, 7], [8]]
    assert list(length_batches(range(4), [5, 5, 5, 5], batch_size=3)) == [[0, 1, 2], [3]]


def test_length_batches_cut_a_batch_whose_padding_would_pass_the_share():
    lengths = [10, 9, 5, 5]
    # [10, 9] pads 1 of 20 tokens; adding a 5 would pad 6 of 30, over the 10% allowed.
    assert list(length_batches(longest_first(lengths), lengths, batch_size=None, max_padding=0.1)) == [[0, 1], [2, 3]]


def test_length_batches_without_a_batch_size_fill_the_token_budget():
    lengths = [4] * 7
    assert list(length_batches(range(7), lengths, batch_size=None, max_tokens=12)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_longest_first_keeps_the_order_of_equal_lengths():
    assert longest_first([2, 5, 2, 5]) == [1, 3, 0, 2]


def test_pad_batch_pads_on_the_right_or_the_left_and_masks_the_padding():
    ids, mask = pad_batch([[7, 8, 9], [5]], pad_id=0)
    assert ids.tolist() == [[7, 8, 9], [5, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[7, 8, 9], [5]], pad_id=0, left=True)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_pad_token_id_falls_back_to_the_end_of_sequence_token_then_zero():
    assert pad_token_id(SimpleNamespace(pad_token_id=3, eos_token_id=2)) == 3
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0


def test_length_batches_stay_within_size_budget_and_padding_share_as_deita_runs_them():
    lengths = [100, 98, 97, 60, 59, 58, 57, 10]
    batches = list(length_batches(range(len(lengths)), lengths, 3, max_tokens=10_000, max_padding=0.1))
    assert batches == [[0, 1, 2], [3, 4, 5], [6], [7]]
    for batch in batches:
        assert lengths[batch[0]] * len(batch) <= 1.1 * sum(lengths[i] for i in batch)
    assert list(length_batches(range(3), [100, 100, 100], 8, max_tokens=250, max_padding=0.1)) == [[0, 1], [2]]
