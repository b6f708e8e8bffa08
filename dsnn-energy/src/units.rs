//! Energy units: joules, watt-hours and kilowatt-hours.
//!
//! Meters work in joules (the SI unit the counters report, after scaling);
//! carbon accounting works in kWh because grid intensities are quoted in
//! gCO2e/kWh. Keeping one newtype avoids silent factor-of-3.6e6 mistakes.

use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign, Sub};

/// Joules in one kilowatt-hour (1000 W x 3600 s).
pub const JOULES_PER_KWH: f64 = 3.6e6;
/// Joules in one watt-hour.
pub const JOULES_PER_WH: f64 = 3600.0;
/// Joules in one picojoule (the op-count model works in pJ).
pub const JOULES_PER_PJ: f64 = 1e-12;

/// An amount of energy, stored in joules.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Energy(f64);

impl Energy {
    /// No energy.
    pub const ZERO: Energy = Energy(0.0);

    /// Energy from joules.
    pub fn from_joules(j: f64) -> Self {
        Energy(j)
    }

    /// Energy from kilowatt-hours.
    pub fn from_kwh(kwh: f64) -> Self {
        Energy(kwh * JOULES_PER_KWH)
    }

    /// Energy from picojoules.
    pub fn from_picojoules(pj: f64) -> Self {
        Energy(pj * JOULES_PER_PJ)
    }

    /// Energy of a constant power (W) held for `seconds`.
    pub fn from_power(watts: f64, seconds: f64) -> Self {
        Energy(watts * seconds)
    }

    /// In joules.
    pub fn joules(self) -> f64 {
        self.0
    }

    /// In watt-hours.
    pub fn wh(self) -> f64 {
        self.0 / JOULES_PER_WH
    }

    /// In kilowatt-hours.
    pub fn kwh(self) -> f64 {
        self.0 / JOULES_PER_KWH
    }

    /// In picojoules.
    pub fn picojoules(self) -> f64 {
        self.0 / JOULES_PER_PJ
    }

    /// Scaled by a dimensionless factor (for example a PUE).
    pub fn scaled(self, factor: f64) -> Self {
        Energy(self.0 * factor)
    }
}

impl Add for Energy {
    type Output = Energy;
    fn add(self, rhs: Energy) -> Energy {
        Energy(self.0 + rhs.0)
    }
}

impl AddAssign for Energy {
    fn add_assign(&mut self, rhs: Energy) {
        self.0 += rhs.0;
    }
}

impl Sub for Energy {
    type Output = Energy;
    fn sub(self, rhs: Energy) -> Energy {
        Energy(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Energy {
    fn sum<I: Iterator<Item = Energy>>(iter: I) -> Energy {
        iter.fold(Energy::ZERO, Add::add)
    }
}

impl std::fmt::Display for Energy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.6} J ({:.3e} kWh)", self.0, self.kwh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_inverses() {
        let e = Energy::from_kwh(1.0);
        assert_eq!(e.joules(), 3.6e6);
        assert_eq!(e.wh(), 1000.0);
        assert_eq!(Energy::from_joules(7200.0).wh(), 2.0);
        assert_eq!(Energy::from_power(100.0, 36.0).joules(), 3600.0);
        assert!((Energy::from_picojoules(3.7).joules() - 3.7e-12).abs() < 1e-24);
        assert_eq!(Energy::from_joules(2.0).scaled(1.5).joules(), 3.0);
    }

    #[test]
    fn arithmetic_and_sum() {
        let total: Energy = [1.0, 2.0, 3.5].into_iter().map(Energy::from_joules).sum();
        assert_eq!(total.joules(), 6.5);
        assert_eq!((total - Energy::from_joules(0.5)).joules(), 6.0);
        let mut e = Energy::ZERO;
        e += Energy::from_joules(4.0);
        assert_eq!(e.joules(), 4.0);
    }
}
