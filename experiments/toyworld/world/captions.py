"""Captions for toy-world scenes: every visible object named, in varied phrasing.

Only the class nouns carry the information; sizes and positions are mentioned now and
then (as web captions mention incidental detail) and colours never (see scenes.py).
Most captions also name the backdrop ("... on the grass"), as real captions name sky,
grass or walls: the background segment then has words of its own to match.
"""
from __future__ import annotations

import numpy as np

from experiments.toyworld.world.scenes import Scene, SceneObject

_OPENINGS = ("", "", "", "a picture of ", "a photo of ", "there is ", "here we see ", "look at ")
_JOINS = (" and ", " next to ", " with ", " beside ", " and also ", " near ")
_BACKDROPS = {"sky": (" in front of the sky", " under the sky", " against a sky"),
              "grass": (" on the grass", " on a lawn of grass", " lying in the grass"),
              "wall": (" against a wall", " in front of a wall", " by a concrete wall"),
              "water": (" on the water", " floating on water", " in the water")}


def _size_word(obj: SceneObject) -> str:
    return "small " if obj.area < 0.12 else "big " if obj.area > 0.3 else ""


def _position(obj: SceneObject) -> str:
    y, x = obj.center
    if abs(x - 0.5) > abs(y - 0.5):
        return " on the left" if x < 0.5 else " on the right"
    return " at the top" if y < 0.5 else " at the bottom"


def _phrase(obj: SceneObject, rng) -> str:
    size = _size_word(obj) if rng.random() < 0.5 else ""
    where = _position(obj) if rng.random() < 0.3 else ""
    article = "an " if (size or obj.name)[0] in "aeiou" else "a "
    return article + size + obj.name + where


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One natural-ish caption naming every object of the scene once, in random order."""
    objects = [scene.objects[i] for i in rng.permutation(len(scene.objects))]
    phrases = [_phrase(o, rng) for o in objects]
    if len(phrases) == 1:
        text = phrases[0]
    elif rng.random() < 0.3:
        text = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    else:
        text = phrases[0]
        for p in phrases[1:]:
            text += str(rng.choice(_JOINS)) + p
    if rng.random() < 0.7:
        text += str(rng.choice(_BACKDROPS[scene.backdrop]))
    return str(rng.choice(_OPENINGS)) + text + "."
