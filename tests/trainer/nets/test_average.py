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


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(nn.Linear(1, 1), decay)
