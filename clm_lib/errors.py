"""Errors clm shows to people. Each message says what is wrong and where; none carries a traceback."""


class ClmError(Exception):
    """Base class: the message is meant for the user as it is."""


class ConfigError(ClmError):
    """The configuration is invalid; the message names the field."""


class IngestError(ClmError):
    """A landing folder or file cannot be ingested at all (not a per-record problem)."""


class TrainingError(ClmError):
    """A training run cannot start or finish (no data, missing model, ...)."""


class RegistryError(ClmError):
    """MLflow refused or lacks what clm asked for."""


class DeployError(ClmError):
    """A promotion or rollback cannot be done as asked (no previous version, unknown version, ...)."""


class DeployBusyError(DeployError):
    """Another promotion or rollback holds the deploy lock; the message names it."""


class ServingError(ClmError):
    """A serving slot, the router or a serving backend failed or refused (the message names the slot)."""
