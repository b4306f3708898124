r"""The ``arsm-jax`` command: every experiment from the command line.

    arsm-jax --config=toy --workdir=runs/toy
    arsm-jax --config=vae:tiny --workdir=/tmp/vae --config.num_epochs=1
    arsm-jax --config=configs/rl.py:acrobot --workdir=runs/rl_acrobot
    arsm-jax --help                      # experiments, presets, fields

``python -m arsm_jax`` and ``python experiments/main.py`` (in a clone) are
the same command. ``--config`` takes an experiment name with an optional
preset (``vae:arsm_linear``) or the path of a config file (a ``configs/*.py``
path that does not exist where the command runs is read from the configs
shipped in the package). ``--config.<field>=<value>`` overrides a field.
Re-running with the same ``--workdir`` resumes.

Every config error (an unknown field, experiment or preset, a value of the
wrong type or out of range, a changed config on rerun) is one line on
stderr naming the field and what is allowed, with exit status 2 and nothing
run; ``--verbose`` adds the traceback. A missing extra, a workdir that is not
the run's and an unrestorable checkpoint are one line with exit status 1.
"""

from __future__ import annotations

import ast
import difflib
import logging as std_logging
import os
import sys
import textwrap
import traceback
from typing import Any, Optional, Sequence

EXIT_CONFIG_ERROR = 2
PROG = "arsm-jax"
_HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull", "-?")


class ConfigError(ValueError):
  """A config the command refuses; its message is the one line printed."""


class UsageError(ValueError):
  """A command line the command cannot read (a missing or unknown flag)."""


# ----------------------------------------------------------------------------
# The command line.


class _Args:
  """The flags this module reads itself; ``rest`` goes to absl."""

  def __init__(self):
    self.spec: Optional[str] = None
    self.workdir: Optional[str] = None
    self.overrides: list[str] = []     # "--config.a.b=value", as given
    self.verbose = False
    self.help = False
    self.rest: list[str] = []          # other flags (absl logging, ...)


def parse_args(argv: Sequence[str]) -> _Args:
  """Splits ``argv`` (without the program name) into the command's flags."""
  args = _Args()
  it = iter(argv)
  for a in it:
    if a in _HELP_FLAGS:
      args.help = True
    elif a in ("--verbose", "-v"):
      args.verbose = True
    elif a in ("--config", "--workdir"):
      value = next(it, None)
      if value is None:
        raise UsageError(f"{a} needs a value: {a}=...")
      if a == "--config":
        args.spec = value
      else:
        args.workdir = value
    elif a.startswith("--config="):
      args.spec = a.split("=", 1)[1]
    elif a.startswith("--workdir="):
      args.workdir = a.split("=", 1)[1]
    elif a.startswith("--config."):
      if "=" not in a:
        value = next(it, None)
        if value is None or value.startswith("--"):
          raise UsageError(f"{a} needs a value: {a}=...")
        a = f"{a}={value}"
      args.overrides.append(a)
    elif not a.startswith("-"):
      raise UsageError(f"unexpected argument {a!r}; every setting is a flag "
                       "(--config=..., --workdir=..., --config.<field>=...)")
    else:
      args.rest.append(a)
  return args


def resolve_spec(spec: str) -> str:
  """``'vae:tiny'`` or ``'configs/vae.py:tiny'`` -> the path of the file."""
  from arsm_jax import experiments  # pylint: disable=g-import-not-at-top
  name, sep, preset = spec.partition(":")
  if not name:
    raise ConfigError(f"--config={spec}: no experiment named; allowed: "
                      f"{', '.join(experiments.names())} (or a config file).")
  if name.endswith(".py") or "/" in name or os.sep in name:
    if not os.path.isfile(name):
      stem = os.path.splitext(os.path.basename(name))[0]
      if stem in experiments.names() and os.path.basename(
          os.path.dirname(os.path.abspath(name))) == "configs":
        name = experiments.config_path(stem)   # the shipped copy
      else:
        raise ConfigError(f"--config={spec}: no file {name!r}; allowed: an "
                          f"experiment ({', '.join(experiments.names())}) "
                          "or the path of a config file.")
  elif name in experiments.names():
    name = experiments.config_path(name)
  else:
    close = difflib.get_close_matches(name, experiments.names(), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(f"--config={spec}: unknown experiment {name!r}; "
                      f"{hint}allowed: {', '.join(experiments.names())}.")
  return name + sep + preset


def _type_name(value: Any) -> str:
  if isinstance(value, bool):
    return "True or False"
  if isinstance(value, int):
    return "an integer"
  if isinstance(value, float):
    return "a number"
  if isinstance(value, str):
    return "a string"
  if isinstance(value, tuple):
    return "a tuple such as (1,2)"
  return f"a {type(value).__name__}"


def _field(config, path: str):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def unknown_field_message(config, override: str) -> str:
  """One line for ``--config.a.b=...`` when ``config.a`` has no ``b``."""
  path = override[2:].split("=", 1)[0]            # config.a.b
  parts = path.split(".")[1:]
  node, where = config, "config"
  for part in parts[:-1]:
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      parts = parts[:parts.index(part) + 1]
      break
    where += "." + part
  name = parts[-1]
  known = sorted(node.keys()) if hasattr(node, "keys") else []
  close = difflib.get_close_matches(name, known, n=3)
  message = f"--{path}: {where} has no field {name!r}"
  if close:
    message += f"; did you mean {' or '.join(close)}?"
  if known and len(known) <= 20:
    message += f"{'' if close else '.'} Its fields: {', '.join(known)}."
  elif known and not close:
    message += f" (`{PROG} --config=... --help` lists the fields)."
  return message


def build_config(spec: str, overrides: Sequence[str]):
  """The locked config of ``--config=spec`` with ``overrides`` applied.

  Overrides are parsed by ml_collections' ``config_flags``, as in
  ``experiments/main.py`` before: tuples as ``(1,2)``, booleans, numbers.

  Raises:
    ConfigError: an unknown experiment, preset or field, or a value of the
      wrong type (one line naming the field and what it takes).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from arsm_jax import experiments  # pylint: disable=g-import-not-at-top
  path = resolve_spec(spec)
  try:
    base = experiments.get_config(path)
  except ValueError as e:            # an unknown preset
    raise ConfigError(f"--config={spec}: {e}") from e
  for o in overrides:
    field = o[2:].split("=", 1)[0]
    try:
      _field(base, field.split(".", 1)[1])
    except (KeyError, AttributeError, TypeError):
      raise ConfigError(unknown_field_message(base, o)) from None
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                  lock_config=True)
  argv = [PROG, f"--config={path}", *overrides]
  saved_argv = sys.argv
  sys.argv = argv                    # config_flags reads the overrides there
  try:
    values(argv)
  except flags.Error as e:
    message = str(e)
    for o in overrides:
      if o in message or message.startswith(f"flag {o.split('=')[0]}"):
        field = o[2:].split("=", 1)[0]
        value = o.split("=", 1)[1]
        default = _field(base, field.split(".", 1)[1])
        takes = ("a value" if default is None else _type_name(default))
        raise ConfigError(f"--{field}={value}: {field} takes {takes} "
                          f"(default {default!r}); got {value!r}.") from e
    raise ConfigError(message.removeprefix("flag ")) from e
  except AttributeError as e:
    raise ConfigError(f"{e}") from e
  finally:
    sys.argv = saved_argv
  return values.config


def validate(config) -> None:
  """The task's own checks (ranges, choices, names); one line on failure."""
  from arsm_jax import tasks  # pylint: disable=g-import-not-at-top
  module = tasks.get(config.experiment)
  try:
    module.validate_config(config)
  except (ValueError, TypeError) as e:
    raise ConfigError(str(e).split("\n")[0]) from e


# ----------------------------------------------------------------------------
# --help: experiments, presets and fields with their comments.


def field_comments(path: str) -> dict[str, str]:
  """``{field: comment}`` for the ``config.<field> = ...`` lines of a config.

  Reads the top-level body of ``get_config`` (before the presets): a run of
  comment lines describes the assignments that follow it up to the next
  blank line or comment. One-word section headings ("# Data.") are dropped.
  """
  with open(path, encoding="utf-8") as fh:
    source = fh.read()
  tree = ast.parse(source)
  fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef)
             and n.name == "get_config"), None)
  if fn is None:
    return {}
  lines = source.splitlines()
  body_end = next((n.lineno - 1 for n in fn.body if isinstance(n, ast.If)),
                  fn.end_lineno)
  comments: dict[str, str] = {}
  block: list[str] = []
  fresh = True
  for line in lines[fn.body[0].lineno - 1:body_end]:
    s = line.strip()
    if s.startswith("#"):
      text = s.lstrip("#").strip()
      if not fresh:
        block, fresh = [], True
      if not (text.endswith(".") and " " not in text and len(block) == 0
              and text[:1].isupper() and len(text) < 20):
        block.append(text)
    elif not s:
      block, fresh = [], True
    elif line.startswith("  config.") and "=" in s:
      fresh = False
      name = s[len("config."):].split("=")[0].strip()
      if "." not in name and name.isidentifier():
        comments[name] = " ".join(block)
  return comments


def _short(value: Any, width: int = 48) -> str:
  text = repr(value)
  if hasattr(value, "to_dict"):
    text = repr(value.to_dict())
    if not value.keys() or all(v is None for v in value.values()):
      text = "{" + ", ".join(value.keys()) + "}" if value.keys() else "{}"
  return text if len(text) <= width else text[:width - 3] + "..."


def experiment_help(name: str) -> str:
  """The presets and fields (default and comment) of experiment ``name``."""
  from arsm_jax import experiments  # pylint: disable=g-import-not-at-top
  path = experiments.config_path(name)
  module = experiments.load_config_module(path)
  config = module.get_config()
  presets = getattr(module, "PRESETS", {})
  doc = (module.__doc__ or "").strip().splitlines()
  out = [f"{name}: {doc[0] if doc else ''}",
         f"  --config={name}[:preset]   ({path})", "  presets:"]
  width = max((len(p) for p in presets), default=0) + 2
  for p, text in presets.items():
    out.append(f"    {(p or '(none)'):<{width}}{text}")
  out.append("  fields (--config.<field>=<value>; default, then what it does):")
  comments = field_comments(path)
  order = [f for f in comments if f in config] + [
      f for f in config.keys() if f not in comments]   # as in the file
  order = [f for f in order if f != "experiment"]
  for i, field in enumerate(order):
    out.append(f"    {field} = {_short(config[field])}")
    comment = comments.get(field, "")
    following = comments.get(order[i + 1], "") if i + 1 < len(order) else ""
    if comment and comment != following:   # once, after a group sharing it
      out.extend(textwrap.wrap(comment, 76, initial_indent=" " * 8,
                               subsequent_indent=" " * 8))
  return "\n".join(out)


def usage() -> str:
  from arsm_jax import __version__  # pylint: disable=g-import-not-at-top
  return textwrap.dedent(f"""\
      usage: {PROG} --config=EXPERIMENT[:PRESET] --workdir=DIR [--config.FIELD=VALUE ...]
                    [--verbose] [--help]

      arsm_jax {__version__}: runs an experiment of Yin, Yue and Zhou (ICML 2019).
      Also `python -m arsm_jax`, or `python experiments/main.py` in a clone.

        --config=SPEC          an experiment (toy, vae, rl) with an optional
                               preset (vae:arsm_linear), or a config file
                               (configs/vae.py:tiny)
        --workdir=DIR          the run's metrics, checkpoints, figures and
                               summary; rerunning with it resumes
        --config.FIELD=VALUE   override a field (tuples as (1,2))
        --verbose              tracebacks with errors
        --help                 this text; with --config=NAME only that experiment

      Config errors exit with status 2, other errors with 1.
      """)


def help_text(only: Optional[str] = None) -> str:
  from arsm_jax import experiments  # pylint: disable=g-import-not-at-top
  names = [only] if only else ["toy", "vae", "rl"]
  names += [n for n in experiments.names() if n not in names and not only]
  parts = [usage().rstrip()]
  parts += [experiment_help(n) for n in names]
  return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------
# Running.


def quiet_backend_probe() -> None:
  """Hides JAX's INFO lines about platforms it probed and did not find.

  Without an accelerator every launch would start with "Unable to initialize
  backend 'tpu'"; that is logged at INFO by ``jax._src.xla_bridge``, whose
  warnings and errors (a GPU present but unusable, ...) still show.
  """
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


def _fail(message: str, code: int, verbose: bool) -> int:
  if verbose:
    traceback.print_exc()
  print(f"{PROG}: {message}" if code == EXIT_CONFIG_ERROR
        and message.startswith("unexpected") else message, file=sys.stderr)
  return code


def _missing_extra_line(e: ModuleNotFoundError) -> str:
  from arsm_jax import tasks  # pylint: disable=g-import-not-at-top
  return str(tasks.MissingExtraError.for_modules(
      f"The {PROG} command", [e.name or ""]))


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command; returns its exit status (the console script's)."""
  argv = list(sys.argv if argv is None else argv)
  prog = os.path.basename(argv[0]) if argv else PROG
  verbose = "--verbose" in argv or "-v" in argv
  try:
    args = parse_args(argv[1:])
    if args.help:
      only = None
      if args.spec:
        only = os.path.splitext(os.path.basename(
            args.spec.partition(":")[0]))[0]
        from arsm_jax import experiments  # pylint: disable=g-import-not-at-top
        if only not in experiments.names():
          only = None
      sys.stdout.write(help_text(only))
      return 0
    if args.spec is None or args.workdir is None:
      missing = " and ".join(f for f, v in (("--config", args.spec),
                                            ("--workdir", args.workdir))
                             if v is None)
      raise UsageError(f"{missing} required, e.g. {PROG} --config=toy "
                       f"--workdir=runs/toy ({PROG} --help lists the "
                       "experiments)")
    if not args.workdir.strip():
      raise UsageError("--workdir is empty; pass the folder for the run's "
                       "files, e.g. --workdir=runs/vae (it is created if "
                       "missing; rerunning with it resumes).")
    config = build_config(args.spec, args.overrides)
    from arsm_jax import tasks  # pylint: disable=g-import-not-at-top
    # Before anything is compiled or written: a missing extra is one line.
    tasks.check_requirements(config.experiment, config)
    validate(config)
    from absl import app  # pylint: disable=g-import-not-at-top
    from absl import flags  # pylint: disable=g-import-not-at-top
    try:
      flags.FLAGS([prog, *args.rest])
    except flags.Error as e:
      raise UsageError(
          f"{e}; the command's flags: --config, --workdir, "
          "--config.<field>, --verbose, --help (and absl's logging flags)."
      ) from e
  except (ConfigError, UsageError) as e:
    return _fail(str(e), EXIT_CONFIG_ERROR, verbose)
  except ModuleNotFoundError as e:
    return _fail(_missing_extra_line(e), 1, verbose)
  except ImportError as e:           # tasks.MissingExtraError
    return _fail(str(e), 1, verbose)

  status = []

  def run(unused_argv):
    status.append(_run(config, args.workdir, verbose))

  try:
    app.run(run, argv=[prog, *args.rest])
  except SystemExit as e:
    if e.code not in (None, 0):
      raise
  return status[0] if status else 0


def _run(config, workdir: str, verbose: bool) -> int:
  from absl import logging  # pylint: disable=g-import-not-at-top
  from arsm_jax import parallel  # pylint: disable=g-import-not-at-top
  from arsm_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from arsm_jax import runs  # pylint: disable=g-import-not-at-top
  from arsm_jax import workdirs  # pylint: disable=g-import-not-at-top
  from arsm_jax import tasks  # pylint: disable=g-import-not-at-top
  quiet_backend_probe()
  try:
    try:
      parallel.initialize_distributed()
    except (ValueError, RuntimeError) as e:
      # A bad multi-process launch (process id out of range, coordinator
      # unreachable in time): one line, not a traceback.
      return _fail(f"distributed launch: {e}", 1, verbose)
    # The whole config is in the run's config.json; --verbose logs it here.
    logging.info("Experiment %r, workdir %s", config.experiment, workdir)
    if verbose:
      logging.info("Config:\n%s", config)
    tasks.train_and_evaluate(config, workdir)
  except runs.ConfigMismatchError as e:
    # A rerun under a changed config: the message names the fields.
    return _fail(str(e), EXIT_CONFIG_ERROR, verbose)
  except (tasks.MissingExtraError, workdirs.WorkdirError,
          checkpoints.CheckpointError) as e:
    # A missing extra, a workdir that is not the run's or is in use, no
    # restorable checkpoint: one line, not a traceback.
    return _fail(str(e), 1, verbose)
  return 0


def console_main() -> None:
  """The ``arsm-jax`` console script."""
  sys.exit(main())


__all__ = ["ConfigError", "build_config", "field_comments", "help_text",
           "main", "parse_args", "resolve_spec", "validate"]
