"""InfoNCE against a brute-force per-example loop."""

from __future__ import annotations

import math

import pytest
import torch

from hybridbatch.losses import InfoNCELoss, info_nce, same_group_mask


def brute_force(q, d, pos, temperature, mask=None):
    """Mean over queries of -log softmax(cos / t)[positive], skipping masked candidates, by hand."""
    losses = []
    for i in range(q.shape[0]):
        scores = []
        for j in range(d.shape[0]):
            if mask is not None and mask[i][j]:
                continue
            cos = float(q[i] @ d[j]) / (float(q[i].norm()) * float(d[j].norm()))
            scores.append((j, cos / temperature))
        denom = sum(math.exp(s) for _, s in scores)
        own = next(s for j, s in scores if j == pos[i])
        losses.append(-(own - math.log(denom)))
    return sum(losses) / len(losses)


def data(b=4, n_neg=3, dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, dim, generator=gen, dtype=torch.float64)  # (B, d)
    d = torch.randn(b + n_neg, dim, generator=gen, dtype=torch.float64)  # (N, d)
    return q, d, torch.arange(b)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
def test_matches_brute_force(temperature):
    q, d, pos = data()
    got = info_nce(q, d, pos, temperature)
    assert got.item() == pytest.approx(brute_force(q, d, pos, temperature), rel=1e-9)


def test_scale_invariant_and_temperature_sharpens():
    q, d, pos = data()
    assert info_nce(q * 7, d * 0.1, pos).item() == pytest.approx(info_nce(q, d, pos).item(), rel=1e-9)
    q_aligned = d[:4] + 0.01 * q  # queries close to their positives: lower temperature -> lower loss
    assert info_nce(q_aligned, d, pos, 0.05) < info_nce(q_aligned, d, pos, 1.0)


def test_mask_removes_exactly_the_masked_logits():
    q, d, pos = data()
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[0, 5] = mask[2, 1] = mask[3, 0] = True
    got = info_nce(q, d, pos, 0.1, mask=mask).item()
    assert got == pytest.approx(brute_force(q, d, pos, 0.1, mask.tolist()), rel=1e-9)
    assert got != pytest.approx(info_nce(q, d, pos, 0.1).item(), rel=1e-6)
    # a masked candidate has no influence at all
    d2 = d.clone()
    d2[5] = torch.randn(5, dtype=torch.float64)
    only0 = torch.zeros(4, 7, dtype=torch.bool)
    only0[:, 5] = True
    assert info_nce(q, d2, pos, 0.1, mask=only0).item() == pytest.approx(info_nce(q, d, pos, 0.1, mask=only0).item())


def test_masking_the_positive_is_an_error():
    q, d, pos = data()
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[1, 1] = True
    with pytest.raises(ValueError, match="own positive"):
        info_nce(q, d, pos, mask=mask)


def test_symmetric_adds_the_passage_to_query_direction():
    q, d, pos = data()
    t = 0.2
    # passage -> query: passage i scores the B queries, target query i
    backward = brute_force(d[:4], q, [0, 1, 2, 3], t)
    expected = (brute_force(q, d, pos, t) + backward) / 2
    assert info_nce(q, d, pos, t, symmetric=True).item() == pytest.approx(expected, rel=1e-9)
    # with a mask, the same pairs are removed in the transposed direction
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[0, 2] = True  # query 0 loses passage 2, so passage 2 loses query 0
    back_mask = [[False] * 4 for _ in range(4)]
    back_mask[2][0] = True
    expected = (brute_force(q, d, pos, t, mask.tolist()) + brute_force(d[:4], q, [0, 1, 2, 3], t, back_mask)) / 2
    assert info_nce(q, d, pos, t, mask=mask, symmetric=True).item() == pytest.approx(expected, rel=1e-9)


def test_permuted_positive_index():
    q, d, _ = data()
    pos = torch.tensor([2, 0, 3, 1])
    assert info_nce(q, d, pos, 0.3).item() == pytest.approx(brute_force(q, d, pos.tolist(), 0.3), rel=1e-9)


def test_gradient_flows_to_queries_and_documents():
    q, d, pos = data()
    q.requires_grad_(True)
    d.requires_grad_(True)
    mask = torch.zeros(4, 7, dtype=torch.bool)
    mask[0, 6] = True
    InfoNCELoss(0.05, symmetric=True)(q, d, pos, mask).backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(d.grad).all()
    assert q.grad.abs().sum() > 0 and d.grad[:6].abs().sum() > 0
    assert d.grad[6].abs().sum() > 0  # still a candidate for queries 1..3
    # the gradient is the true one: central finite differences on a few coordinates
    eps = 1e-6
    for which, idx in ((0, (1, 2)), (1, (6, 0)), (1, (2, 4))):
        numeric = 0.0
        for sign in (1, -1):
            moved = [q.detach().clone(), d.detach().clone()]
            moved[which][idx] += sign * eps
            numeric += sign * info_nce(*moved, pos, 0.05, mask, symmetric=True).item() / (2 * eps)
        grad = (q.grad, d.grad)[which]
        assert grad[idx].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_loss_module_matches_function():
    q, d, pos = data()
    loss = InfoNCELoss(temperature=0.1, symmetric=True)
    assert loss(q, d, pos).item() == pytest.approx(info_nce(q, d, pos, 0.1, symmetric=True).item())
    assert "temperature=0.1" in repr(loss)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0)


def test_shape_errors():
    q, d, pos = data()
    with pytest.raises(ValueError, match="positive_index"):
        info_nce(q, d, pos[:3])
    with pytest.raises(ValueError, match=r"\(B, d\)"):
        info_nce(q, d[:, :3], pos)
    with pytest.raises(ValueError, match="mask"):
        info_nce(q, d, pos, mask=torch.zeros(4, 6, dtype=torch.bool))


def test_same_group_mask():
    # 3 queries (groups 10, 11, 12); candidates: 3 positives, then a translation of group 10's positive,
    # a hard negative drawn for group 10, and a hard negative of group 11 that is group 12's answer text
    query_groups = torch.tensor([10, 11, 12])
    doc_groups = torch.tensor([10, 11, 12, 10, 10, 12])
    hard_of = torch.tensor([-1, -1, -1, -1, 10, 11])
    pos = torch.arange(3)
    mask = same_group_mask(query_groups, doc_groups, pos, hard_of)
    expected = torch.zeros(3, 6, dtype=torch.bool)
    expected[0, 3] = True  # translation of query 0's positive: a false negative
    expected[2, 5] = True  # group 12's answer, drawn as group 11's hard negative: false negative for 12
    assert torch.equal(mask, expected)
    # -1 labels a candidate of no group: never masked
    plain = same_group_mask(query_groups, torch.tensor([10, 11, 12, -1]), pos)
    assert not plain.any()
    q, d, _ = data(b=3, n_neg=3)
    info_nce(q, d, pos, mask=mask)  # never masks a positive


def test_clip_loss_equals_brute_force_symmetric_cross_entropy():
    from hybridbatch.losses import clip_loss

    gen = torch.Generator().manual_seed(3)
    text, image = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    scale = torch.tensor(14.3)
    t = torch.nn.functional.normalize(text, dim=-1)
    i = torch.nn.functional.normalize(image, dim=-1)
    expected = 0.0
    for a in range(5):  # text a -> its image a among all images, and image a -> text a among all texts
        row = torch.stack([scale * (t[a] @ i[j]) for j in range(5)])
        col = torch.stack([scale * (i[a] @ t[j]) for j in range(5)])
        expected += (-torch.log_softmax(row, 0)[a] - torch.log_softmax(col, 0)[a]) / 2
    assert torch.allclose(clip_loss(text, image, scale), expected / 5, atol=1e-5)
    with pytest.raises(ValueError, match="as many images"):
        clip_loss(text, image[:4], scale)
