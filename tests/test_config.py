"""Every configurable setting documents itself."""

from bodhi_jupyter.app import BodhiApp


def test_every_trait_has_help():
    missing = [f"{cls.__name__}.{name}" for cls in BodhiApp.classes
               for name, trait in cls.class_traits(config=True).items()
               if cls.__module__.startswith("bodhi_jupyter") and not (trait.help or "").strip()]
    assert missing == []


def test_config_classes_are_listed_for_help_output():
    names = {cls.__name__ for cls in BodhiApp.classes}
    assert {"Database", "ModelDiscovery", "ModelRegistry", "LlamaServerLauncher",
            "EngineSupervisor"} <= names
