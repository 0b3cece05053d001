package config

import (
	"math"
	"time"
)

// Ceilings on values that no deployment means: a typo (an extra digit, a
// cents value written as dollars per minute) is refused at start rather
// than spending without a cap. Each is far above anything either provider
// sells: the largest Vast and Lambda offers are 8-GPU hosts of tens of
// dollars an hour, with GPUs of at most a few hundred GB.
const (
	MaxPricePerHourCeiling = 1000.0   // classes[].max_price_per_hour, USD per host-hour
	MaxBidMultiple         = 10.0     // classes[].interruptible.bid, × the offer's minimum bid
	MaxSpendPerHourCeiling = 100000.0 // limits.max_spend_per_hour, USD per hour
	MaxGPUCountCeiling     = 64       // classes[].gpu.count
	MaxGPUMemoryGBCeiling  = 10000.0  // classes[].gpu.min_memory_gb, per GPU
	MaxDiskGBCeiling       = 1000000  // classes[].disk_gb (1 PB)
	MaxMinIdleCeiling      = 1000     // classes[].min_idle, warm hosts per class
	MaxDurationCeiling     = 365 * 24 * time.Hour
)

// checkFloat refuses NaN and infinities (YAML's .nan and .inf decode into a
// float64, and every comparison with NaN is false, so a NaN cap is no cap),
// negatives and values above ceiling (0: no ceiling).
func checkFloat(key string, v, ceiling float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return errf(key, "must be a finite number, not %v", v)
	}
	if v < 0 {
		return errf(key, "must not be negative, not %v", v)
	}
	if ceiling > 0 && v > ceiling {
		return errf(key, "%v is above %v, more than any deployment means; check the units", v, ceiling)
	}
	return nil
}

// checkInt refuses negatives and values above ceiling (0: no ceiling).
func checkInt(key string, v, ceiling int64) error {
	if v < 0 {
		return errf(key, "must not be negative, not %d", v)
	}
	if ceiling > 0 && v > ceiling {
		return errf(key, "%d is above %d, more than any deployment means", v, ceiling)
	}
	return nil
}

// checkDuration refuses negatives (where negative does not document "off")
// and durations above a year.
func checkDuration(key string, d time.Duration, negativeMeansOff bool) error {
	if d < 0 && !negativeMeansOff {
		return errf(key, "must not be negative, not %s", d)
	}
	if d > MaxDurationCeiling {
		return errf(key, "%s is longer than a year", d)
	}
	return nil
}

// validateNumbers checks every number and duration outside the classes.
func (c *Config) validateNumbers() error {
	checks := []error{
		checkInt("github.app_id", c.GitHub.AppID, 0),
		checkDuration("github.poll_interval", c.GitHub.PollInterval, false),
		checkDuration("providers.vast.min_request_interval", c.Providers.Vast.MinRequestInterval, false),
		checkDuration("providers.vast.launch_interval", c.Providers.Vast.LaunchInterval, false),
		checkDuration("providers.lambda.min_request_interval", c.Providers.Lambda.MinRequestInterval, false),
		checkDuration("providers.lambda.launch_interval", c.Providers.Lambda.LaunchInterval, false),
		checkDuration("defaults.boot_timeout", c.Defaults.BootTimeout, false),
		checkDuration("defaults.idle_timeout", c.Defaults.IdleTimeout, false),
		checkDuration("defaults.max_lifetime", c.Defaults.MaxLifetime, false),
		checkDuration("reconcile.interval", c.Reconcile.Interval, true),
		checkDuration("reconcile.gc_interval", c.Reconcile.GCInterval, true),
		checkDuration("reconcile.unused_runner_backoff", c.Reconcile.UnusedRunnerBackoff, false),
		checkDuration("work.job_timeout", c.Work.JobTimeout, false),
		checkDuration("work.rescue_after", c.Work.RescueAfter, false),
		checkInt("limits.max_leases", int64(c.Limits.MaxLeases), 0),
		checkFloat("limits.max_spend_per_hour", c.Limits.MaxSpendPerHour, MaxSpendPerHourCeiling),
		c.Retention.validate(),
		c.BadMachines.validate(),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	return nil
}

// validateClassNumbers checks a class's numbers; key is "classes[i] (name)".
func (cc *ClassConfig) validateNumbers(key string) error {
	checks := []error{
		checkInt(key+".gpu.count", int64(cc.GPU.Count), MaxGPUCountCeiling),
		checkFloat(key+".gpu.min_memory_gb", cc.GPU.MinMemoryGB, MaxGPUMemoryGBCeiling),
		checkFloat(key+".max_price_per_hour", cc.MaxPricePerHour, MaxPricePerHourCeiling),
		checkFloat(key+".interruptible.bid", cc.interruptibleBid(), MaxBidMultiple),
		checkFloat(key+".min_reliability", cc.MinReliability, 0),
		checkInt(key+".max_leases", int64(cc.MaxLeases), 0),
		checkInt(key+".min_idle", int64(cc.MinIdle), MaxMinIdleCeiling),
		checkInt(key+".disk_gb", int64(cc.DiskGB), MaxDiskGBCeiling),
		checkDuration(key+".boot_timeout", cc.BootTimeout, false),
		checkDuration(key+".idle_timeout", cc.IdleTimeout, false),
		checkDuration(key+".max_lifetime", cc.MaxLifetime, false),
		checkDuration(key+".hedge_after", cc.HedgeAfter, false),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	if cc.MinReliability > 1 {
		return errf(key+".min_reliability", "must be between 0 and 1")
	}
	return nil
}
