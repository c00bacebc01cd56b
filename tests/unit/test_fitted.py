import numpy as np
import pytest

from thresher.operators.fitted import Fitted


class Toy(Fitted):
    def __init__(self, k: int = 3, names: tuple[str, ...] = ("a",), device: str = "cpu"):
        if k < 1:
            raise ValueError("k >= 1")
        self.k = k
        self.names = tuple(names)
        self.device = device
        self.constructed = True  # not a parameter, not learned: rebuilt by the constructor at load

    def fit(self) -> "Toy":
        self.weights_ = np.arange(6, dtype=np.float32).reshape(2, 3)
        self.counts_ = np.array([3, 0, 7], np.int64)
        self.mean_ = 1.5
        self.n_ = 12
        self.label_ = "x"
        self.auc_ = None
        self.nan_ = float("nan")
        self.by_name_ = {"a": [1.0, 2.0], "b": {"c": None}}
        self._cache = object()  # private: neither saved nor restored
        return self


class Overridden(Toy):
    _load_overrides = {"device": "cpu"}


class WithExtra(Toy):
    _extra_state = ("blob_",)

    def fit(self) -> "WithExtra":
        super().fit()
        self.blob_ = bytearray(b"opaque")
        return self

    def _save_extra(self, directory):
        (directory / "blob.bin").write_bytes(self.blob_)

    def _load_extra(self, directory):
        self.blob_ = bytearray((directory / "blob.bin").read_bytes())


def test_round_trip_of_params_arrays_scalars_dicts_and_none(tmp_path):
    toy = Toy(k=5, names=("p", "q"), device="cuda").fit()
    toy.save(tmp_path)
    again = Toy.load(tmp_path)
    assert (again.k, again.names, again.device, again.constructed) == (5, ("p", "q"), "cuda", True)
    for name in ("weights_", "counts_"):
        a, b = getattr(again, name), getattr(toy, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert (again.mean_, again.n_, again.label_, again.auc_) == (1.5, 12, "x", None)
    assert np.isnan(again.nan_)
    assert again.by_name_ == {"a": [1.0, 2.0], "b": {"c": None}}
    assert not hasattr(again, "_cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.npy", "fitted.json", "weights.npy"]


def test_load_overrides_replace_saved_params(tmp_path):
    Overridden(device="cuda").fit().save(tmp_path)
    assert Overridden.load(tmp_path).device == "cpu"


def test_extra_state_goes_through_the_hooks(tmp_path):
    WithExtra().fit().save(tmp_path)
    assert WithExtra.load(tmp_path).blob_ == bytearray(b"opaque")


def test_a_value_neither_json_nor_array_is_refused(tmp_path):
    toy = Toy().fit()
    toy.blob_ = bytearray(b"opaque")
    with pytest.raises(TypeError, match="_extra_state"):
        toy.save(tmp_path)


def test_unfitted_and_wrong_class_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        Toy().save(tmp_path)
    Toy().fit().save(tmp_path)
    with pytest.raises(ValueError, match="holds a fitted Toy"):
        Overridden.load(tmp_path)
