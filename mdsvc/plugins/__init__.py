"""Drop-in folder for vendor extensions (lookup backends, instance stores, vendordata providers).

Modules here, or in any ``mdsvc/plugins`` directory on ``sys.path``, are found with
``twisted.plugin.getPlugins(IFace, mdsvc.plugins)``.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
