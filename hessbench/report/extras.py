"""The report's optional dependencies (the ``report`` extra): matplotlib for the figures,
Jinja2 and markdown-it-py for the HTML page. A missing one is a :class:`UserError` naming it
and the extra to install, not an ``ImportError`` traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

from hessbench.errors import UserError

INSTALL = "pip install 'hessbench[report]'"
#: module -> the distribution that provides it
REPORT_MODULES = {"matplotlib": "matplotlib", "jinja2": "jinja2", "markupsafe": "jinja2",
                  "markdown_it": "markdown-it-py"}


def require(module: str) -> ModuleType:
    """Import ``module``, one of :data:`REPORT_MODULES`; :class:`UserError` naming its package
    and the extra if it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(f"hessbench report needs {REPORT_MODULES.get(module, module)}, which is "
                        f"not installed ({err}): {INSTALL}") from None


def require_report_extras() -> None:
    """Check every module of the ``report`` extra up front (before anything is written);
    :class:`UserError` naming all the missing packages and the extra to install."""
    missing = []
    for module, package in REPORT_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            if package not in missing:
                missing.append(package)
    if missing:
        raise UserError(f"hessbench report needs {', '.join(missing)}, not installed: "
                        f"{INSTALL}")
