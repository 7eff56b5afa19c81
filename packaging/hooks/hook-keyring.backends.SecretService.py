"""PyInstaller hook: the Secret Service backend (GNOME Keyring, KWallet 6) needs SecretStorage and jeepney.

PyInstaller's own keyring hook collects the backends and keyring's entry-point
metadata; this adds the D-Bus client modules, some of which jeepney imports by name.
"""

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("secretstorage") + collect_submodules("jeepney", filter=lambda name: ".tests" not in name)
datas = copy_metadata("secretstorage") + copy_metadata("jeepney")
