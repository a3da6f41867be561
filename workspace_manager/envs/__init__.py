"""The interpreter each location runs on: its own, or a virtualenv built once and reused.

Flow: `interpreters` (which Python, its identity cached on disk) -> `key` (content-addressed
recipe) -> `service.EnvironmentService` (reuse, or `build` under a file `lock`, with an
installer from `installers/`, progress through `progress`) -> `store` (the cache on disk).

Choices worth knowing:
- Relative paths in `requirements` and `pip_args` resolve against the location's working
  directory, which is also the installer's working directory (pip's own rule for paths inside
  a requirements file); `requirements_file` is already absolute (relative to workspace.yaml).
- A virtualenv cannot be renamed once built (console scripts carry absolute shebangs), so a
  build happens in `envs/.builds/<key>.<pid>.<random>` and is published by atomically
  replacing the symlink `envs/<key>`; a build nobody publishes is garbage once its builder died.
- wsm injects nothing into an env: the loader reaches the SDK through sys.path.
- `environment: {project}` (`project.py`): a uv.lock or pylock.toml is installed exactly by uv
  into a virtualenv made without pip or setuptools; no lock: the project is a local path
  requirement.
"""
