"""engine.sous_chef / sous_chef.scale_recipe as a mex process engine."""
import json

import mex_engine
from mex_engine import Fail


def parse_markdown(text):
    recipe = {"title": "", "ingredients": []}
    for line in text.splitlines():
        if line.startswith("# "):
            recipe["title"] = line[2:].strip()
        elif line.startswith("- "):
            qty, unit, name = (line[2:].split(None, 2) + ["", ""])[:3]
            recipe["ingredients"].append({"name": name, "quantity": float(qty), "unit": unit})
    return recipe


def scale(req):
    p = req.params
    try:
        raw = req.read_text("recipe_ref")
        recipe = parse_markdown(raw) if raw.lstrip().startswith("#") else json.loads(raw)
        items = recipe["ingredients"]
        factor = p.get("scale_factor")
        if factor is None:
            frm = p.get("servings_from", recipe.get("servings"))
            if not frm or "servings_to" not in p:
                raise Fail("CHEF_UNIT_ERROR", "give scale_factor, or servings_to (and servings_from if the recipe has no servings)")
            factor = p["servings_to"] / frm
        scaled = [dict(i, quantity=round(float(i["quantity"]) * factor, 3)) for i in items]
    except (ValueError, KeyError, TypeError) as e:
        raise Fail("CHEF_PARSE_ERROR", "the recipe does not parse: %r" % (e,))
    if factor <= 0:
        raise Fail("CHEF_UNIT_ERROR", "the scale factor must be positive")
    if p.get("preserve_bakers_percent", True):
        flour = sum(i["quantity"] for i in scaled if "flour" in i["name"] and i["unit"] == "g")
        for i in scaled:
            if flour and i["unit"] == "g":
                i["bakers_percent"] = round(100 * i["quantity"] / flour, 2)
    out = dict(recipe, ingredients=scaled, scale_factor=factor)
    if "servings" in recipe:
        out["servings"] = round(recipe["servings"] * factor, 3)
    if p["output"] == "json":
        req.write_json("recipe.json", out, kind="artifact.dataset")
    else:
        lines = ["# " + out.get("title", "")] + [
            "- %s %s %s" % (i["quantity"], i["unit"], i["name"]) for i in scaled]
        req.write_text("recipe.md", "\n".join(lines) + "\n", "artifact.document", "text/markdown")


mex_engine.run({"sous_chef.scale_recipe": scale})
