"""Policy specs, masks, schedules and branches."""
import pytest
import torch

from condbench.policies import BRANCH_COND, BRANCH_UNCOND, GRAMMAR, PolicySpecError, mask_for, parse_policy


def _c(n=6, d=64, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 0.1


def apply(spec, c, step=0, num_steps=10, branch=None, reference=None, t_part=None, cond_part=None):
    t_part = torch.zeros_like(c) if t_part is None else t_part
    cond_part = c if cond_part is None else cond_part
    return parse_policy(spec).apply(c, t_part, cond_part, step=step, num_steps=num_steps, branch=branch,
                                    reference=reference)


@pytest.mark.parametrize("spec, canonical", [
    ("baseline", "baseline"),
    ("tail:0.01", "tail:0.01"),
    (" tail : 0.010 @ last:25 ", "tail:0.01@last:25"),
    ("head:5.0@t0", "head:5@t0"),
    ("topk:16,mask=fixed", "topk:16,mask=fixed"),
    ("random:0.5@first:3,seed=7", "random:0.5@first:3,seed=7"),
    ("random-like:tail:0.02@last:10,branch=cond", "random-like:tail:0.02@last:10,branch=cond"),
    ("drop-t", "drop-t"),
    ("drop-cond@t0,branch=uncond", "drop-cond@t0,branch=uncond"),
    ("tail:0.01@all", "tail:0.01"),
])
def test_valid_specs_parse_to_a_canonical_form(spec, canonical):
    policy = parse_policy(spec)
    assert policy.canonical() == canonical
    assert parse_policy(policy.canonical()) == parse_policy(canonical)


@pytest.mark.parametrize("spec, problem", [
    ("", "empty"),
    ("tial:0.01", "unknown action 'tial'"),
    ("tail", "TAU must be a number"),
    ("tail:abc", "TAU must be a number"),
    ("tail:-1", ">= 0"),
    ("tail:nan", "finite"),
    ("topk:2.5", "integer"),
    ("random:1.5", "FRACTION must be in [0, 1]"),
    ("random-like:drop-t", "masking action"),
    ("tail:0.01@middle", "unknown schedule"),
    ("tail:0.01@last:0", "K must be >= 1"),
    ("tail:0.01,mask=sometimes", "mask must be"),
    ("tail:0.01,colour=red", "unknown option"),
    ("drop-t,mask=fixed", "mask=fixed applies only"),
    ("baseline@t0", "baseline takes no schedule"),
    ("drop-t:3", "takes no argument"),
    ("topk:0", "K must be >= 1"),
    ("tail:0.01,mask=fixed,mask=per-sample", "option 'mask' is given twice"),
    ("tail:0.01,seed=1,seed=1", "option 'seed' is given twice"),
])
def test_bad_specs_fail_with_the_grammar(spec, problem):
    with pytest.raises(PolicySpecError) as error:
        parse_policy(spec)
    assert problem in str(error.value)
    assert GRAMMAR in str(error.value) and "policy" in GRAMMAR


def test_thresholds_differing_in_the_8th_digit_have_different_keys_and_may_share_a_label():
    a, b = parse_policy("tail:0.05031576105423927"), parse_policy("tail:0.05031584105423927")
    assert a.canonical() == b.canonical() == "tail:0.0503158"  # the short label for people
    assert a.key() != b.key()
    assert parse_policy(a.key()) == a and parse_policy(b.key()) == b  # the key reads back as the same policy
    assert parse_policy("random-like:tail:0.05031576105423927@t0").key() == "random-like:tail:0.05031576105423927@t0"
    # where the label is exact, the key is the label
    for spec in ("tail:0.05", "head:5.0@t0", "random:0.5,seed=3", "topk:16,mask=fixed"):
        assert parse_policy(spec).key() == parse_policy(spec).canonical()


def test_tail_and_head_zero_exactly_the_dimensions_on_either_side_of_tau():
    c = _c()
    tail = apply("tail:0.05", c)
    assert torch.equal(tail.removed, c.abs() < 0.05)
    assert torch.equal(tail.c, torch.where(c.abs() < 0.05, 0.0, c))
    head = apply("head:0.15", c)
    assert torch.equal(head.removed, c.abs() > 0.15)
    assert (head.c.abs() <= 0.15).all()


def test_topk_keeps_exactly_k_largest_per_sample():
    c = _c()
    out = apply("topk:5", c)
    assert ((out.c != 0).sum(1) == 5).all()
    assert torch.equal(out.c.abs().topk(5, dim=1).values, c.abs().topk(5, dim=1).values)


def test_random_like_removes_as_many_dimensions_as_its_tail_per_sample():
    c = _c(n=8)
    tail = apply("tail:0.08", c).removed
    control = apply("random-like:tail:0.08", c).removed
    assert torch.equal(control.sum(1), tail.sum(1))
    assert not torch.equal(control, tail)  # other dimensions, chosen at random


def test_random_masks_are_seeded_and_shared_across_the_batch():
    c = _c(n=4)
    a = apply("random:0.25", c, step=3).removed
    assert (a.sum(1) == 16).all()
    assert torch.equal(a, apply("random:0.25", c, step=3).removed)
    assert torch.equal(a[0], a[1])  # one permutation per step: a row's mask never depends on its batch
    assert not torch.equal(a, apply("random:0.25", c, step=4).removed)
    assert not torch.equal(a, apply("random:0.25,seed=1", c, step=3).removed)
    single = apply("random:0.25", c[2:3], step=3).removed
    assert torch.equal(single[0], a[2])


@pytest.mark.parametrize("spec, active", [
    ("tail:0.05", list(range(10))),
    ("tail:0.05@t0", [0]),
    ("tail:0.05@first:3", [0, 1, 2]),
    ("tail:0.05@last:4", [6, 7, 8, 9]),
    ("baseline", []),
])
def test_schedules_choose_the_steps(spec, active):
    c = _c()
    changed = [s for s in range(10) if not torch.equal(apply(spec, c, step=s).c, c)]
    assert changed == active
    assert [s for s in range(10) if parse_policy(spec).active(s, 10)] == active


def test_branch_option_limits_the_rows_that_change():
    c = _c(n=4)
    branch = torch.tensor([BRANCH_COND, BRANCH_COND, BRANCH_UNCOND, BRANCH_UNCOND])
    both = apply("tail:0.05", c, branch=branch)
    cond = apply("tail:0.05,branch=cond", c, branch=branch)
    uncond = apply("tail:0.05,branch=uncond", c, branch=branch)
    assert both.removed[:2].any() and both.removed[2:].any()
    assert torch.equal(cond.c[2:], c[2:]) and torch.equal(cond.c[:2], both.c[:2])
    assert torch.equal(uncond.c[:2], c[:2]) and torch.equal(uncond.c[2:], both.c[2:])


def test_drop_t_and_drop_cond_keep_one_part():
    t_part, cond_part = _c(seed=1), _c(seed=2)
    c = t_part + cond_part
    assert torch.equal(apply("drop-t", c, t_part=t_part, cond_part=cond_part).c, cond_part)
    assert torch.equal(apply("drop-cond", c, t_part=t_part, cond_part=cond_part).c, t_part)


def test_fixed_mask_comes_from_the_reference_and_is_the_same_for_every_row():
    c = _c()
    reference = c.mean(0, keepdim=True)
    out = apply("tail:0.03,mask=fixed", c, reference=lambda: reference)
    expected = (reference.abs() < 0.03).expand_as(c)
    assert torch.equal(out.removed, expected)
    with pytest.raises(ValueError, match="reference"):
        apply("tail:0.03,mask=fixed", c)


def test_mask_for_rejects_random_actions():
    with pytest.raises(ValueError):
        mask_for(parse_policy("random:0.5").action, _c())
