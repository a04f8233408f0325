import pickle

import numpy as np
import pytest

from ttcrouter import (BeamSearch, BestOfN, MajorityVote, WeightedMajorityVote,
                       default_strategy_space, encode_strategies, parse_strategy)
from ttcrouter.strategies import (EXTRA_ENCODING, METHODS, SCORERS, AdaptiveVote, Strategy,
                                  as_strategy, encoding_scheme)


@pytest.mark.parametrize("spec, name", [
    (BestOfN(4), "best_of_n@n=4"),
    (MajorityVote(8), "majority_vote@n=8"),
    (WeightedMajorityVote(8), "weighted_majority_vote@n=8"),
    (BeamSearch(8, 4), "beam_search@n=8,w=4"),
    (BeamSearch(8, 2, max_steps=5), "beam_search@n=8,w=2,steps=5"),
])
def test_canonical_name_round_trip(spec, name):
    assert spec.name == name
    assert str(spec) == name
    assert parse_strategy(name) == spec
    assert parse_strategy(name).name == name


def test_parse_tolerates_whitespace_and_returns_specs_unchanged():
    assert parse_strategy(" majority_vote @ n=2 ") == MajorityVote(2)
    spec = BeamSearch(4, 2)
    assert parse_strategy(spec) is spec
    assert as_strategy("best_of_n@n=1") == BestOfN(1)


def test_specs_are_immutable_hashable_and_picklable():
    spec = BeamSearch(8, 4)
    with pytest.raises(Exception):
        spec.n = 2
    assert len({spec, BeamSearch(8, 4), BestOfN(8)}) == 2
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert BestOfN(4) != MajorityVote(4)


def test_beam_search_geometry():
    spec = BeamSearch(16, 4)
    assert spec.n_beams == 4 and spec.beam_width == 4 and not spec.parallel
    assert MajorityVote(4).beam_width == 1 and MajorityVote(4).parallel
    assert BestOfN(2).needs_reward_model and not MajorityVote(2).needs_reward_model


@pytest.mark.parametrize("make, match", [
    (lambda: BeamSearch(6, 4), "must divide n=6"),
    (lambda: BestOfN(0), ">= 1"),
    (lambda: MajorityVote(-2), ">= 1"),
    (lambda: BeamSearch(4, 0), ">= 1"),
    (lambda: Strategy(4), "abstract"),
])
def test_bad_specs_raise_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_non_integer_n_is_rejected():
    with pytest.raises(TypeError, match="integer"):
        BestOfN(2.5)
    with pytest.raises(TypeError, match="integer"):
        MajorityVote(True)


@pytest.mark.parametrize("name, match", [
    ("best_of_n", "expected 'method@n=N'"),
    ("self_consistency@n=4", "Unknown strategy method"),
    ("best_of_n@n=four", "takes mode, n"),
    ("best_of_n@n=4,w=2", "takes mode, n"),
    ("majority_vote@n=4,b=2", "takes mode, n"),
    ("majority_vote@n=4,mode=loud", "mode must be one of"),
    ("adaptive_vote@n=16,b=3", "must divide"),
    ("adaptive_vote@n=16,b=4,t=1.5", r"in \(0, 1\]"),
    ("beam_search@w=2", "lacks n"),
    ("beam_search@n=6,w=4", "must divide"),
])
def test_parse_errors_say_what_is_wrong(name, match):
    with pytest.raises(ValueError, match=match):
        parse_strategy(name)


def test_parse_rejects_non_strings():
    with pytest.raises(TypeError, match="must be a string"):
        parse_strategy(8)


def test_encoding_layout():
    enc = encode_strategies(["best_of_n@n=1", MajorityVote(8), BeamSearch(16, 4)])
    assert enc.dtype == np.float32 and enc.shape == (3, len(METHODS) + 2)
    np.testing.assert_array_equal(enc[0], [1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(enc[1], [0, 1, 0, 0, 3, 1])
    np.testing.assert_array_equal(enc[2], [0, 0, 0, 1, 4, 4])
    np.testing.assert_array_equal(BeamSearch(16, 4).encode(), enc[2])


def test_default_space():
    space = default_strategy_space()
    names = [s.name for s in space]
    # one sample is one execution: held once, as majority_vote@n=1
    assert len(space) == 15 and len(set(names)) == 15
    assert "majority_vote@n=1" in names and "best_of_n@n=1" not in names
    assert "weighted_majority_vote@n=1" not in names
    old = [s.name for s in default_strategy_space(single_sample_once=False)]
    assert len(old) == 17 and {"best_of_n@n=1", "weighted_majority_vote@n=1"} <= set(old)
    assert "beam_search@n=8,w=4" in names and "weighted_majority_vote@n=16" in names
    assert all(parse_strategy(n) == s for n, s in zip(names, space))
    small = default_strategy_space(max_n=4)
    assert max(s.n for s in small) == 4
    assert {s.method for s in small} == set(METHODS)


@pytest.mark.parametrize("spec, name", [
    (MajorityVote(4, mode="direct"), "majority_vote@n=4,mode=direct"),
    (MajorityVote(4, mode="cot"), "majority_vote@n=4"),
    (BeamSearch(8, 4, mode="direct"), "beam_search@n=8,w=4,mode=direct"),
    (AdaptiveVote(16), "adaptive_vote@n=16,b=4,t=0.75"),
    (AdaptiveVote(16, batch=2, threshold=1, mode="direct"),
     "adaptive_vote@n=16,b=2,t=1,mode=direct"),
    (AdaptiveVote(12, batch=3, threshold=0.6), "adaptive_vote@n=12,b=3,t=0.6"),
])
def test_modes_and_adaptive_votes_round_trip(spec, name):
    assert spec.name == name and parse_strategy(name) == spec
    assert parse_strategy(name).name == name


def test_default_mode_keeps_old_names_and_positional_arguments():
    assert BeamSearch(8, 4) == BeamSearch(n=8, beam_width=4, mode="cot")
    assert parse_strategy("majority_vote@n=8,mode=cot").name == "majority_vote@n=8"
    assert AdaptiveVote(16).max_rounds == 4 and not AdaptiveVote(16).parallel


def test_extended_space_holds_both_modes_and_early_stopping():
    space = default_strategy_space(modes=("cot", "direct"), adaptive=True)
    names = [s.name for s in space]
    assert len(names) == len(set(names)) == 2 * 16 + 2
    assert "adaptive_vote@n=16,b=4,t=0.75,mode=direct" in names
    assert sum(s.method == "beam_search" for s in space) == 2


def test_encoding_scheme_1_is_unchanged_and_scheme_2_appends_columns():
    old = ["best_of_n@n=1", MajorityVote(8), BeamSearch(16, 4)]
    assert encoding_scheme(old) == 1
    wide = encode_strategies(old + [MajorityVote(8, mode="direct"),
                                    AdaptiveVote(16, batch=4, threshold=0.5)])
    assert wide.shape == (5, len(METHODS) + 2 + len(EXTRA_ENCODING))
    # scheme 2's first columns are scheme 1 for the strategies scheme 1 can encode
    np.testing.assert_array_equal(wide[:3, :len(METHODS) + 2], encode_strategies(old))
    np.testing.assert_array_equal(wide[:3, len(METHODS) + 2:], 0)
    np.testing.assert_array_equal(wide[3], [0, 1, 0, 0, 3, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(wide[4], [0, 0, 0, 0, 4, 1, 1, 2, 0.5, 0])
    with pytest.raises(ValueError, match="scheme 2"):
        encode_strategies([AdaptiveVote(16)], scheme=1)


def test_router_records_the_encoding_it_was_fitted_on():
    """Old spaces keep the 6-column encoding (old router files hold probes of that width and
    predict as before: tests/test_persistence.py); a space with a direct mode or an
    early-stopping vote gets the wider one, kept in the fitted router."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from ttcrouter import UtilityRouter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    for names, width in ((["majority_vote@n=1", "majority_vote@n=4"], len(METHODS) + 2),
                         (["majority_vote@n=1", "majority_vote@n=1,mode=direct",
                           "adaptive_vote@n=16,b=4,t=0.75"], len(METHODS) + 6)):
        Y = pd.DataFrame(rng.uniform(size=(40, len(names))), columns=names)
        router = UtilityRouter(probe=LogisticRegression()).fit(X, Y)
        assert router.strategy_encoding_.shape == (len(names), width)
        assert set(router.predict(X)) <= set(names)


@pytest.mark.parametrize("spec, name", [
    (BestOfN(16, scorer="verifier"), "best_of_n@n=16,scorer=verifier"),
    (WeightedMajorityVote(4, mode="direct", scorer="verifier"),
     "weighted_majority_vote@n=4,mode=direct,scorer=verifier"),
    (BeamSearch(4, 2, scorer="verifier"), "beam_search@n=4,w=2,scorer=verifier"),
    (BestOfN(16), "best_of_n@n=16"),
])
def test_a_named_scorer_is_part_of_the_name(spec, name):
    assert spec.name == name and parse_strategy(name) == spec
    # the parameters may come in any order; the canonical name has scorer last
    assert parse_strategy("best_of_n@scorer=verifier,n=16").name == \
        "best_of_n@n=16,scorer=verifier"
    assert BestOfN(16, scorer="verifier") != BestOfN(16)


@pytest.mark.parametrize("name, match", [
    ("majority_vote@n=4,scorer=verifier", "reads no rewards"),
    ("adaptive_vote@n=16,b=4,t=0.75,scorer=verifier", "reads no rewards"),
    ("best_of_n@n=4,scorer=prm", "None .*or one of verifier"),
])
def test_a_scorer_where_none_can_be_used_is_refused(name, match):
    with pytest.raises(ValueError, match=match):
        parse_strategy(name)


def test_encoding_scheme_3_flags_the_scorer():
    plain = ["best_of_n@n=4", "best_of_n@n=4,mode=direct", AdaptiveVote(16)]
    marked = plain + ["best_of_n@n=4,scorer=verifier", "beam_search@n=4,w=2,scorer=verifier"]
    assert encoding_scheme(plain) == 2 and encoding_scheme(marked) == 3
    wide = encode_strategies(marked)
    assert wide.shape == (5, len(METHODS) + 2 + len(EXTRA_ENCODING) + len(SCORERS))
    # scheme 3's first columns are scheme 2; the flag tells the two best-of-N apart
    np.testing.assert_array_equal(wide[:3, :-1], encode_strategies(plain))
    np.testing.assert_array_equal(wide[:, -1], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(wide[3, :-1], wide[0, :-1])
    with pytest.raises(ValueError, match="needs encoding scheme 3"):
        encode_strategies(["best_of_n@n=4,scorer=verifier"], scheme=2)
