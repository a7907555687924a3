"""The weight average on weights computed by hand."""

import pytest
import torch
from torch import nn

from trainer.nets.average import WeightAverage


def test_the_average_moves_weights_and_statistics_a_share_of_the_way() -> None:
    net = nn.BatchNorm1d(2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([1.0, 2.0]))
    avg = WeightAverage(net, decay=0.75)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([5.0, 6.0]))
        net.running_mean.copy_(torch.tensor([3.0, 4.0]))
        net.num_batches_tracked.fill_(7)
    avg.update(net)
    # 0.75 * old + 0.25 * new, for the weights and the running statistics (started at 0)
    assert torch.allclose(avg.model.weight, torch.tensor([2.0, 3.0]))
    assert torch.allclose(avg.model.running_mean, torch.tensor([0.75, 1.0]))
    assert int(avg.model.num_batches_tracked) == 7  # an integer buffer is copied
    avg.update(net)
    assert torch.allclose(avg.model.weight, torch.tensor([2.75, 3.75]))
    assert torch.allclose(avg.model.running_mean, torch.tensor([1.3125, 1.75]))
    assert not avg.model.weight.requires_grad and not avg.model.training
    assert torch.equal(net.weight, torch.tensor([5.0, 6.0]))  # the network is not touched


def test_with_the_warm_up_the_first_steps_are_a_running_mean_then_exponential() -> None:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(100.0)  # the weights it was made from: no share with the warm-up
    avg = WeightAverage(net, decay=0.75, warmup=True)  # 1 / (1 - 0.75) = 4 steps of mean
    seen = []
    for w, want in ((2.0, 2.0), (4.0, 3.0), (6.0, 4.0), (8.0, 5.0), (10.0, 6.25)):
        with torch.no_grad():
            net.weight.fill_(w)
        avg.update(net)
        seen.append(float(avg.model.weight))
        # decays 0, 1/2, 2/3, then 0.75 (= min(0.75, 3/4)) and 0.75: the mean of 2, 4, 6, 8
        # is 5, then 0.75 * 5 + 0.25 * 10 = 6.25
        assert float(avg.model.weight) == pytest.approx(want)
    plain = WeightAverage(nn.Linear(1, 1, bias=False), decay=0.75)
    assert plain.updates == 0 and not plain.warmup and avg.updates == 5


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(nn.Linear(1, 1), decay)
