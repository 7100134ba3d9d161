"""tfoptim's update rules, each a ``keras.optimizers.Optimizer``.

Use them anywhere a Keras optimizer goes: ``model.compile(optimizer=tfoptim.optimizers.Adam())``
or ``optimizer.apply_gradients(zip(grads, variables))`` in a custom loop.
"""

from tfoptim.optimizers.ada_belief import AdaBelief
from tfoptim.optimizers.adagrad import Adagrad
from tfoptim.optimizers.adam import Adam
from tfoptim.optimizers.adamw import AdamW
from tfoptim.optimizers.adan import Adan
from tfoptim.optimizers.ademamix import AdEMAMix
from tfoptim.optimizers.adopt import ADOPT
from tfoptim.optimizers._fast_path import FAST_PATH_MIN_SIZE, FUSED_MIN_TOTAL_SIZE, fast_path_enabled
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.cocob import COCOB
from tfoptim.optimizers.dadapt_adam import DAdaptAdam
from tfoptim.optimizers.dynamic_gradient_descent import DynamicGradientDescent
from tfoptim.optimizers.gradient_descent import GradientDescent
from tfoptim.optimizers.lars import LARS
from tfoptim.optimizers.lazy_adam import LazyAdam
from tfoptim.optimizers.lion import Lion
from tfoptim.optimizers.lookahead import Lookahead
from tfoptim.optimizers.madgrad import MADGRAD
from tfoptim.optimizers.muon import Muon
from tfoptim.optimizers.normuon import NorMuon
from tfoptim.optimizers.novograd import NovoGrad
from tfoptim.optimizers.parameter_groups import layer_wise_learning_rate_multipliers
from tfoptim.optimizers.prodigy import Prodigy
from tfoptim.optimizers.psgd_kron import PSGDKron
from tfoptim.optimizers.proximal_adagrad import ProximalAdagrad
from tfoptim.optimizers.radam import RAdam
from tfoptim.optimizers.rmsprop import RMSprop
from tfoptim.optimizers.sam import SAM
from tfoptim.optimizers.schedule_free import ScheduleFree
from tfoptim.optimizers.schedule_free_sgd import ScheduleFreeSGD
from tfoptim.optimizers.sgd import SGD
from tfoptim.optimizers.shampoo import Shampoo
from tfoptim.optimizers.soap import SOAP
from tfoptim.optimizers.swa import SWA
from tfoptim.optimizers.transforms import AdaptiveGradientClipping, GradientCentralization
from tfoptim.optimizers.yogi import Yogi

__all__ = [
    "ADOPT",
    "AdEMAMix",
    "AdaBelief",
    "AdaptiveGradientClipping",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adan",
    "COCOB",
    "DAdaptAdam",
    "DynamicGradientDescent",
    "FAST_PATH_MIN_SIZE",
    "FUSED_MIN_TOTAL_SIZE",
    "GradientCentralization",
    "GradientDescent",
    "LARS",
    "LazyAdam",
    "Lion",
    "Lookahead",
    "MADGRAD",
    "Muon",
    "NorMuon",
    "NovoGrad",
    "Optimizer",
    "PSGDKron",
    "Prodigy",
    "ProximalAdagrad",
    "RAdam",
    "RMSprop",
    "SAM",
    "SGD",
    "SOAP",
    "SWA",
    "ScheduleFree",
    "ScheduleFreeSGD",
    "Shampoo",
    "Yogi",
    "fast_path_enabled",
    "layer_wise_learning_rate_multipliers",
]
