"""Search methods behind one interface; importing this package registers them all."""

from supernas.strategies import bignas as _bignas  # noqa: F401  (registers "bignas")
from supernas.strategies import dmasking as _dmasking  # noqa: F401  (registers "dmasking")
from supernas.strategies import fpnas as _fpnas  # noqa: F401  (registers "fpnas")
from supernas.strategies import proxyless as _proxyless  # noqa: F401  (registers "proxyless")
from supernas.strategies import random as _random  # noqa: F401  (registers "random")
from supernas.strategies import spos as _spos  # noqa: F401  (registers "spos")
from supernas.strategies.base import STRATEGIES, SearchContext, Strategy, read_options

__all__ = ["STRATEGIES", "SearchContext", "Strategy", "read_options"]
