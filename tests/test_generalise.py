"""Appendix B: descriptors, the SVM path, mAP, new classes, and the paired bootstrap of a metric."""

import math

import numpy as np
import pytest
import torch

from vggrepro import models
from vggrepro.data import read_voc_xml, synth
from vggrepro.data.transforms import Preprocess, hflip, rescale
from vggrepro.experiments import chains
from vggrepro.generalise import features as generalise


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return models.init_fan_in(models.build("D", width=1 / 16, num_classes=5, crop=32)).eval()


PRE = Preprocess((120.0, 110.0, 100.0))


def image(seed, h=40, w=52):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, h, w), dtype=np.uint8))


def test_descriptor_is_the_average_with_the_flipped_image(net):
    img = image(1)
    per = generalise.scale_descriptors(net, PRE, [img, hflip(img)], [32, 45])
    assert per.shape == (2, 2, net.classifier[3].out_features)
    np.testing.assert_allclose(per[0], per[1], rtol=1e-4, atol=1e-4)  # a flipped image: the same descriptor
    for j, q in enumerate([32, 45]):  # the definition, by hand: one image at a time
        x = PRE(rescale(img, q))[None]
        with torch.no_grad():
            want = (generalise.penultimate(net, x) + generalise.penultimate(net, x.flip(-1))) / 2
        np.testing.assert_allclose(per[0, j], want[0].double().numpy(), rtol=1e-4, atol=1e-4)  # float32 sums
    assert (per >= 0).all() and per.max() > 0  # after ReLU


def test_penultimate_is_fc7_after_relu_of_the_dense_net(net):
    x = PRE(image(2, 32, 32))[None]
    with torch.no_grad():
        f = net.features(x).flatten(1)
        want = net.classifier[4](net.classifier[3](net.classifier[1](net.classifier[0](f))))
        got = generalise.penultimate(net, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_descriptors_have_unit_norm(net):
    per = generalise.scale_descriptors(net, PRE, [image(3), image(4, 50, 36)], [32, 40, 48])
    for d in (
        generalise.combine(per, "average"),
        generalise.combine(per, "stack"),
        generalise.combine(per, "stack", [1]),
        generalise.stack(generalise.combine(per, "average"), generalise.combine(per, "stack")),
        generalise.pixel_descriptors([image(5)], PRE, 16),
    ):
        np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-12)
    assert generalise.combine(per, "stack").shape[1] == 3 * per.shape[2]
    with pytest.raises(ValueError, match="average"):
        generalise.combine(per, "max")


def test_svm_on_a_separable_toy_set_is_perfect():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 20)) * 5
    y = np.repeat(np.arange(4), 15)
    X = generalise.l2(centres[y] + rng.normal(size=(60, 20)) * 0.3)
    scores, C = generalise.svm_scores(X[::2], y[::2], X[1::2], seed=0)
    assert C in generalise.CS and generalise.mean_class_recall(y[1::2], scores.argmax(1)) == 100.0
    multi = np.stack([y == k for k in range(4)], 1).astype(int)  # the multi-label path
    scores, _ = generalise.svm_scores(X[::2], multi[::2], X[1::2], groups=y[::2], seed=0)
    assert generalise.mean_ap(scores, multi[1::2]) == pytest.approx(100.0)


def test_mean_class_recall_weighs_classes_equally():
    assert generalise.mean_class_recall([0, 0, 0, 1], [0, 0, 0, 0]) == pytest.approx(50.0)


def test_map_by_hand():
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    labels = np.array([[1], [0], [1], [0]])
    assert generalise.mean_ap(scores, labels) == pytest.approx(100 * (1 + 2 / 3) / 2)  # 83.33
    assert generalise.map_loss(scores, labels, np.ones(4))[0] == pytest.approx(100 - 100 * (1 + 2 / 3) / 2)
    tied = np.array([[0.9], [0.7], [0.7], [0.6]])  # a tie is one threshold: precision 2/3 at recall 1
    assert generalise.mean_ap(tied, labels) == pytest.approx(100 * (1 + 2 / 3) / 2)
    tied = np.array([[0.9], [0.8], [0.8], [0.6]])
    assert generalise.map_loss(tied, labels, np.ones(4))[0] == pytest.approx(100 - 100 * (0.5 + 0.5 * 2 / 3))


def test_map_loss_is_sklearns_with_weights():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, (40, 3)).astype(float)  # many ties
    labels = (rng.random((40, 3)) < 0.4).astype(int)
    counts = rng.integers(0, 3, (5, 40))
    got = generalise.map_loss(scores, labels, counts)
    for r in range(5):
        want = np.mean([average_precision_score(labels[:, c], scores[:, c], sample_weight=counts[r]) for c in range(3)])
        assert got[r] == pytest.approx(100 - 100 * want, abs=1e-9)
    assert got.shape == (5,)


def test_metric_effect_for_an_error_rate_is_the_chain_effect():
    # a loss that is a mean over images: the chain term is the chain effect's, and the bootstrap's
    # image term estimates the variance of the chain-averaged difference (the interaction kept)
    rng = np.random.default_rng(2)
    ea, eb = (rng.random((4, 300)) < 0.3).astype(float), (rng.random((4, 300)) < 0.4).astype(float)

    def error_rate(scores, labels, counts):
        return 100.0 * (counts @ scores) / counts.sum(1)

    got = chains.metric_effect(error_rate, list(ea), list(eb), np.zeros(300), resamples=4000)
    want = chains.chain_effect(100.0 * (ea - eb))
    assert got.difference == pytest.approx(want.difference, abs=1e-9)
    assert got.chain_sd == pytest.approx(want.chain_sd, abs=1e-9) and (got.chains, got.images) == (4, 300)
    image_means = (100.0 * (ea - eb)).mean(0)
    assert got.image_se == pytest.approx(image_means.std(ddof=1) / math.sqrt(300), rel=0.1)


def test_metric_effect_by_hand():
    labels = np.tile([[1], [0], [1], [0]], (10, 1))  # ten copies of the hand-computed case: the same mAP
    scores = np.tile([[0.9], [0.8], [0.7], [0.6]], (10, 1))  # ties: each score is one threshold, AP 83.33
    # the same scores in both arms and every chain: nothing varies, the difference is exactly 0
    e = chains.metric_effect(generalise.map_loss, [scores] * 3, [scores] * 3, labels, resamples=200)
    assert (e.difference, e.low, e.high) == (0.0, 0.0, 0.0)
    # a perfect arm against the hand-computed one: 100 - 83.33 points better; two chains: no interval
    perfect = labels.astype(float)
    e = chains.metric_effect(generalise.map_loss, [perfect, perfect], [scores, scores], labels, resamples=200)
    assert e.difference == pytest.approx(-(100 - 100 * (1 + 2 / 3) / 2)) and not e.decidable
    # the chains held fixed (a sanity check): an interval over the images alone, even for one chain
    assert chains.metric_effect(generalise.map_loss, [perfect], [scores], labels, fixed=True).high < 0
    with pytest.raises(ValueError, match="undefined"):  # four images: some draws hold no positive
        chains.metric_effect(generalise.map_loss, [scores[:4]] * 3, [scores[:4]] * 3, labels[:4])
    with pytest.raises(ValueError, match="lists"):
        chains.metric_effect(generalise.map_loss, scores, [scores], labels)
    with pytest.raises(ValueError, match="same images"):
        chains.metric_effect(generalise.map_loss, [scores[:39]] * 3, [scores] * 3, labels)
    with pytest.raises(ValueError, match="pair them chain by chain"):
        chains.metric_effect(generalise.map_loss, [scores], [scores, scores], labels)


def test_splits_map_loss_is_the_mean_over_splits():
    labels = np.tile([[1], [0], [1], [0]], (10, 1))
    scores = np.tile([[0.9], [0.8], [0.7], [0.6]], (10, 1))
    ones = np.ones((1, 40))
    both = generalise.splits_map_loss(np.stack([scores, labels.astype(float)]), labels, ones)
    assert both[0] == pytest.approx((generalise.map_loss(scores, labels, ones)[0] + 0.0) / 2)


def test_novel_classes_are_new_pairs():
    for k in (10, 20, 100):
        train = {(c.shape, c.texture) for c in synth.class_list(k)}
        new = synth.novel_classes(k, 10)
        assert len({(c.shape, c.texture) for c in new}) == 10 and not train & {(c.shape, c.texture) for c in new}
        assert not {c.wnid for c in new} & {c.wnid for c in synth.class_list(k)}
    assert all(c.shape in synth.NOVEL_SHAPES for c in synth.novel_classes(100, 10))  # every old pair is used


def test_default_sets_keep_their_bytes(tmp_path):
    # the digest of this set before the generator learned new classes and several objects
    spec = synth.SynthSpec(
        num_classes=10,
        train_per_class=6,
        val_per_class=3,
        min_side=(40, 72),
        seed=0,
        box_fraction=(0.5, 0.9),
        rotation=30.0,
        background_fade=0.3,
    )
    root = synth.generate(tmp_path / "s", spec, progress=False, workers=1)
    manifest = synth.read_manifest(root)
    assert manifest["digest"] == "4e37430bd04fc70c72b85c140a4b9dee2b8472b0c73cdc943c9c0a8ae62e5637"
    assert "classes" not in manifest["params"] and "objects" not in manifest["params"]


def test_multi_label_set(tmp_path):
    classes = synth.novel_classes(10, 4)
    spec = synth.SynthSpec(
        num_classes=4, classes=classes, objects=(2, 3), train_per_class=3, val_per_class=2, min_side=(40, 60), seed=5
    )
    root = synth.generate(tmp_path / "voc", spec, progress=False, workers=1)
    counts = set()
    for xml in (root / "Annotation").rglob("*.xml"):
        _, objects = read_voc_xml(xml)
        wnids = [w for w, _ in objects]
        assert xml.parent.name in wnids and len(set(wnids)) == len(wnids)
        counts.add(len(wnids))
    assert counts <= {2, 3} and counts
    s = generalise.load_set(root)
    assert s["y_train"].shape == (12, 4) and s["y_test"].shape == (8, 4)
    assert set(s["y_test"].sum(1)) <= {2, 3} and (s["y_train"][np.arange(12), s["pool"]] == 1).all()
    assert synth.read_manifest(root)["params"]["objects"] == [2, 3]


def test_splits_draw_per_class():
    pool = np.repeat(np.arange(3), 10)
    draws = generalise.splits(pool, 4, 3, seed=0)
    assert len(draws) == 3 and all((np.bincount(pool[d]) == 4).all() for d in draws)
    assert not all(np.array_equal(draws[0], d) for d in draws[1:])


def test_the_svm_scores_the_same_on_span_coordinates():
    from sklearn.svm import LinearSVC

    rng = np.random.default_rng(3)
    X = generalise.l2(rng.normal(size=(30, 200)))  # fewer images than dimensions, as at ci
    y = np.repeat(np.arange(3), 10)
    basis = generalise.span(X)
    assert basis.shape == (200, 30)
    np.testing.assert_allclose(basis.T @ basis, np.eye(30), atol=1e-12)
    X_test = rng.normal(size=(7, 200))
    plain = LinearSVC(C=1.0, random_state=0, max_iter=10_000, tol=1e-8).fit(X, y).decision_function(X_test)
    projected = (
        LinearSVC(C=1.0, random_state=0, max_iter=10_000, tol=1e-8).fit(X @ basis, y).decision_function(X_test @ basis)
    )
    np.testing.assert_allclose(projected, plain, atol=1e-5)
