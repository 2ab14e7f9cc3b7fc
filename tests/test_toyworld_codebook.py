import torch

from styledrop.toyworld.build import BuildConfig, vq_model
from styledrop.toyworld.codebook import kmeans, merge_codebook


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(20)
    points = centres[truth] + 0.3 * torch.randn(60, 2, generator=g)
    groups = kmeans(points, 3, 10, torch.Generator().manual_seed(1))
    # The same partition, whatever the groups are called.
    assert all(len(groups[truth == c].unique()) == 1 for c in range(3)) and len(groups.unique()) == 3


def test_a_merged_codebook_encodes_to_groups_and_decodes_each_as_its_centroid():
    torch.manual_seed(0)
    vq = vq_model(BuildConfig(codebook_size=64, token_groups=0)).eval()
    merged = merge_codebook(vq, 8, seed=0)
    codes, centroids = vq.quantize.embedding.weight, merged.quantize.embedding.weight
    assert centroids.shape == (8, codes.shape[1]) and merged.config.num_vq_embeddings == 8
    groups = kmeans(codes, 8, 30, torch.Generator().manual_seed(0))  # the grouping merge_codebook makes
    for k in groups.unique():
        torch.testing.assert_close(centroids[k], codes[groups == k].mean(0))
    kept = {k: v for k, v in merged.state_dict().items() if k != "quantize.embedding.weight"}
    assert all(torch.equal(v, vq.state_dict()[k]) for k, v in kept.items())
    with torch.no_grad():
        _, _, (_, _, ids) = merged.quantize(merged.encode(torch.rand(2, 3, 32, 32)).latents)
    assert ids.max() < 8
