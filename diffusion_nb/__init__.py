"""Diffusion models derived from scratch. The names a user reaches for first are importable from here
(`from diffusion_nb import Trainer, SAMPLERS, ...`); each module holds the rest of its chapter's API."""
__version__ = "0.0.1"

# In chapter order, which is dependency order: each module imports only the ones above it.
from .core import get_device, make_generator, seed_everything, show_images, show_point_sets
from .data import TOY_DATASETS, GaussianMixture, ring_mixture, sample_toy
from .measures import sliced_wasserstein, noise_floor, mixture_report, mode_report
from .images import DATASETS, make_digits, load_dataset, make_loader
from .schedules import SCHEDULES, NoiseSchedule, make_schedule, q_sample
from .oracle import (OracleEps, OracleConditionalEps, OracleClassifier, perturbed_score, OracleScore,
                     OracleSDEScore)
from .posterior import sample_ddpm, x0_from_eps, eps_from_x0
from .ddpm import NoisePredictorMLP, simple_loss, train_ddpm
from .losses import vlb_terms, hybrid_loss
from .unet import UNET_CONFIGS, UNetConfig, UNet
from .samplers import GRIDS, time_grid, sample_respaced, sample_ddim, ddim_invert, sample_dpmpp
from .solvers import SAMPLERS, sample_dpmpp3m, sample_unipc, sample_ipndm, sample_heun
from .train import TrainConfig, Trainer, generate, load_model
from .metrics import digits_classifier, conditional_accuracy, fid
from .guidance import (GUIDANCE_KINDS, ClassifierFreeGuidance, GradientGuidance, guided_model,
                       sample_guided_ancestral)
from .score import dsm_loss, annealed_langevin
from .sde import SDE_NAMES, make_sde, sample_euler_maruyama, sample_pc, sample_ode, log_likelihood
from .precond import PreconditionedEps
from .cascade import CASCADE_CONFIGS, ConditionalMixture, OracleSuperResEps, build_cascade, sample_cascade, load_cascade
from .distributed import DistributedTrainer
from .latent import (LATENT_CONFIGS, OracleLatentEps, Autoencoder, LatentDiffusion, load_latent_diffusion)

import types as _types
__all__ = [name for name, value in globals().items()                  # the names above, not the submodules
           if not name.startswith('_') and not isinstance(value, _types.ModuleType)]
