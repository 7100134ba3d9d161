"""Every optimizer the contract tests run on: the seven classical rules plus the framework
ports whose flags change the rule (gradient-form momentum, dampening, TF1's RMSProp start)."""

import pytest

import tfoptim.optimizers as to
from tfoptim.compat import tf1, torch

OPTIMIZERS = {
    "GradientDescent": lambda: to.GradientDescent(0.05),
    "SGD": lambda: to.SGD(0.02, momentum=0.9, nesterov=True),
    "DynamicGradientDescent": lambda: to.DynamicGradientDescent(0.05, decay_rate=0.95),
    "Adagrad": lambda: to.Adagrad(0.05),
    "RMSprop": lambda: to.RMSprop(0.005, momentum=0.5, centered=True),
    "Adam": lambda: to.Adam(0.01, amsgrad=True),
    "AdamW": lambda: to.AdamW(0.01),
    "torch.SGD": lambda: torch.SGD(lr=0.02, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "tf1.RMSPropOptimizer": lambda: tf1.RMSPropOptimizer(0.005, momentum=0.5),
}


@pytest.fixture(params=sorted(OPTIMIZERS))
def make_optimizer(request):
    return OPTIMIZERS[request.param]
