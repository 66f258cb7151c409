//! `food_safety.pasteurization_time` as a mex process engine (mex-engine-sdk).
//!
//! Model `usda`: a log-linear lethality model, time = log reduction x D(T),
//! D(T) = D_ref x 10^((T_ref - T) / z), with reference values per food for a
//! 7-log (poultry) or 6.5-log (meat) Salmonella reduction, plus the time for
//! the core of a slab of `thickness_mm` to reach the bath temperature
//! (~0.136 min/mm^2). An illustration of an engine, not food-safety advice.

use mex_engine_sdk::{Fail, Request};
use serde_json::json;

/// (food, log reduction, D_ref minutes at T_ref, T_ref °C, z °C)
const FOODS: &[(&str, f64, f64, f64, f64)] = &[
    ("chicken", 7.0, 5.0, 60.0, 5.6),
    ("turkey", 7.0, 5.0, 60.0, 5.6),
    ("beef", 6.5, 3.0, 60.0, 5.9),
    ("pork", 6.5, 3.0, 60.0, 5.9),
];

fn pasteurize(req: &mut Request) -> Result<(), Fail> {
    let food = req.param_str("food")?.to_lowercase();
    let (thickness, temp) = (req.param_f64("thickness_mm")?, req.param_f64("temp_c")?);
    if req.param_str("model")? != "usda" {
        return Err(Fail::new(
            "FOOD_RULES_MISSING",
            "this engine implements the usda model only",
        ));
    }
    if req.param_str("output")? != "json" {
        return Err(Fail::new(
            "FOOD_RULES_MISSING",
            "this engine writes json only",
        ));
    }
    let Some(&(_, logs, d_ref, t_ref, z)) = FOODS.iter().find(|f| f.0 == food) else {
        return Err(Fail::new(
            "FOOD_RULES_MISSING",
            format!("no model for {food:?}; known: chicken, turkey, beef, pork"),
        ));
    };
    if !(54.5..=90.0).contains(&temp) || !(1.0..=100.0).contains(&thickness) {
        return Err(Fail::new(
            "FOOD_UNSAFE_REJECTED",
            "temp_c must be 54.5..90 and thickness_mm 1..100",
        ));
    }
    let hold = logs * d_ref * 10f64.powf((t_ref - temp) / z);
    let heat = 0.136 * thickness * thickness;
    let minutes = |m: f64| (m * 10.0).ceil() / 10.0;
    let result = json!({
        "food": food, "temp_c": temp, "thickness_mm": thickness, "model": "usda",
        "log_reduction": logs, "come_up_minutes": minutes(heat),
        "hold_minutes": minutes(hold), "total_minutes": minutes(heat + hold),
    });
    req.write_json("pasteurization.json", "artifact.dataset", &result)
}

fn main() -> std::process::ExitCode {
    mex_engine_sdk::run(pasteurize)
}
