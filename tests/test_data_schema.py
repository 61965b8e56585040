"""Class names: the one list every stage shares."""

import pytest

from data_schema import TUTORIAL_CLASSES, category_key, display_name, folder_name, places365_categories, resolve_classes


def test_places365_has_365_official_categories_in_index_order():
    categories = places365_categories()
    assert len(categories) == 365
    assert categories[0] == "airfield" and categories[158] == "gas_station" and categories[364] == "zen_garden"


@pytest.mark.parametrize("spelling", ["Gas Station", "gas_station", "/g/gas_station", " GAS  station "])
def test_every_common_spelling_finds_the_official_key(spelling):
    assert category_key(spelling) == "gas_station"


def test_nested_categories_round_trip_through_folder_names():
    assert folder_name("arena/hockey") == "Arena - Hockey"
    assert category_key("Arena - Hockey") == category_key("arena-hockey") == "arena/hockey"
    assert display_name("gas_station") == "Gas Station"


def test_unknown_class_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean: gas_station"):
        category_key("gas staton")


def test_class_lists():
    assert resolve_classes("tutorial") == TUTORIAL_CLASSES
    assert len(resolve_classes("all")) == 365
    assert resolve_classes("Lawn, Igloo") == ("lawn", "igloo")
    with pytest.raises(ValueError, match="more than once"):
        resolve_classes("lawn,Lawn")
