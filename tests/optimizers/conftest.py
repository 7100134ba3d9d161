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
    "ScheduleFreeSGD": lambda: to.ScheduleFreeSGD(0.05, warmup_steps=3),
    "Lookahead": lambda: to.Lookahead(to.Adam(0.01), sync_period=3),
    "SWA": lambda: to.SWA(to.SGD(0.02, momentum=0.9), start_averaging=2, average_period=3),
    "SAM": lambda: to.SAM(to.Adam(0.01), rho=0.05),
    "ASAM": lambda: to.SAM(to.SGD(0.02, momentum=0.9), rho=0.5, adaptive=True),
    "ScheduleFree": lambda: to.ScheduleFree(to.AdamW(0.01, beta_1=0.0), warmup_steps=3),
    "GradientCentralization": lambda: to.GradientCentralization(to.SGD(0.02, momentum=0.9)),
    "AdaptiveGradientClipping": lambda: to.AdaptiveGradientClipping(to.Adam(0.01), clip_factor=0.05),
    "Prodigy": lambda: to.Prodigy(weight_decay=0.01, safeguard_warmup=True),
    "DAdaptAdam": lambda: to.DAdaptAdam(use_bias_correction=True, coupled_weight_decay=0.01),
    "LARS": lambda: to.LARS(0.1, trust_coefficient=0.01, nesterov=True, lars_weight_decay=1e-4),
    "LazyAdam": lambda: to.LazyAdam(0.01, amsgrad=True),
    "COCOB": lambda: to.COCOB(),
    "ProximalAdagrad": lambda: to.ProximalAdagrad(0.05, l1_regularization_strength=1e-4, l2_regularization_strength=1e-4),
    "Adan": lambda: to.Adan(0.01, weight_decay=0.01),
    "MADGRAD": lambda: to.MADGRAD(0.01, weight_decay=1e-3),
    "AdEMAMix": lambda: to.AdEMAMix(0.005, alpha_warmup=10, beta_3_warmup=10, weight_decay=0.01),
    "ADOPT": lambda: to.ADOPT(0.005, weight_decay=0.01),
    "Lion": lambda: to.Lion(0.003, beta_1=0.8, weight_decay=0.01),
    "RAdam": lambda: to.RAdam(0.01, degenerated_to_sgd=True, amsgrad=True, total_steps=40, weight_decay=0.01),
    "AdaBelief": lambda: to.AdaBelief(0.01, amsgrad=True, weight_decay=0.01),
    "Yogi": lambda: to.Yogi(0.01, l1_regularization_strength=1e-4, l2_regularization_strength=1e-4),
    "NovoGrad": lambda: to.NovoGrad(0.01, grad_averaging=True, amsgrad=True, moment_weight_decay=1e-3),
    "SOAP": lambda: to.SOAP(0.01, max_precond_dim=8),
    "Shampoo": lambda: to.Shampoo(0.01, epsilon=1e-3, max_preconditioner_dim=256, precondition_frequency=2, momentum=0.5,
                                   target_parameter_dimensionality=2),
    "Muon": lambda: to.Muon(0.02, weight_decay=0.01, ns_coefficients="polar_express"),
    "NorMuon": lambda: to.NorMuon(0.02, adam_lr_ratio=0.5),
    "PSGDKron": lambda: to.PSGDKron(0.01, weight_decay=0.01, preconditioner_update_probability=0.5),
    "torch.SGD": lambda: torch.SGD(lr=0.02, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "tf1.RMSPropOptimizer": lambda: tf1.RMSPropOptimizer(0.005, momentum=0.5),
}


@pytest.fixture(params=sorted(OPTIMIZERS))
def make_optimizer(request):
    return OPTIMIZERS[request.param]
