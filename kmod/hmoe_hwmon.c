// SPDX-License-Identifier: GPL-2.0
/*
 * hmoe_hwmon.c: the card's power and energy through hwmon (/sys/class/hwmon/hwmonN,
 * name "hmoe"). The backend says where the numbers come from: a sensor on a real card
 * ("measured") or the backend's model ("modeled", the emulated card); the attribute
 * energy_source tells user space which, so a benchmark never passes a model off as a
 * measurement.
 */
#include <linux/hwmon.h>
#include <linux/hwmon-sysfs.h>
#include <linux/ktime.h>
#include <linux/math64.h>

#include "hmoe_drv.h"

/*
 * power1_input: average board power in microwatts since the previous read of this file
 * (since the card was created for the first read); reads less than 1 ms apart return
 * the previous value. Recommended read period: 1 s, by one reader.
 */
static long hmoe_hwmon_power_uw(struct hmoe_device *hdev)
{
	bool measured;
	u64 now_ns, uj, dt_us, uw;

	mutex_lock(&hdev->hwmon_lock);
	now_ns = ktime_get_ns();
	uj = hdev->ops->energy_uj(hdev, &measured);
	dt_us = div_u64(now_ns - hdev->hwmon_last_ns, 1000);
	if (dt_us >= 1000 && uj >= hdev->hwmon_last_uj) {
		hdev->hwmon_last_uw = mul_u64_u64_div_u64(uj - hdev->hwmon_last_uj, 1000000,
							  dt_us);
		hdev->hwmon_last_uj = uj;
		hdev->hwmon_last_ns = now_ns;
	}
	uw = hdev->hwmon_last_uw;
	mutex_unlock(&hdev->hwmon_lock);
	return (long)uw;
}

static int hmoe_hwmon_read(struct device *dev, enum hwmon_sensor_types type, u32 attr,
			   int channel, long *val)
{
	struct hmoe_device *hdev = dev_get_drvdata(dev);
	bool measured;

	switch (type) {
	case hwmon_power:
		*val = hmoe_hwmon_power_uw(hdev);
		return 0;
	case hwmon_energy:
		/* energy1_input: microjoules used since the card was created, cumulative;
		 * read it at the start and end of what you measure (any period). */
		*val = (long)hdev->ops->energy_uj(hdev, &measured);
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static umode_t hmoe_hwmon_is_visible(const void *data, enum hwmon_sensor_types type,
				     u32 attr, int channel)
{
	if (type == hwmon_power && attr == hwmon_power_input)
		return 0444;
	if (type == hwmon_energy && attr == hwmon_energy_input)
		return 0444;
	return 0;
}

/*
 * energy_source: "measured" when power1_input and energy1_input come from the card's
 * sensor, "modeled" when they come from the backend's power model. Read once.
 */
static ssize_t energy_source_show(struct device *dev, struct device_attribute *attr,
				  char *buf)
{
	struct hmoe_device *hdev = dev_get_drvdata(dev);
	bool measured;

	hdev->ops->energy_uj(hdev, &measured);
	return sysfs_emit(buf, "%s\n", measured ? "measured" : "modeled");
}
static DEVICE_ATTR_RO(energy_source);

static struct attribute *hmoe_hwmon_attrs[] = {
	&dev_attr_energy_source.attr,
	NULL,
};
ATTRIBUTE_GROUPS(hmoe_hwmon);

static const struct hwmon_channel_info *hmoe_hwmon_info[] = {
	HWMON_CHANNEL_INFO(power, HWMON_P_INPUT),
	HWMON_CHANNEL_INFO(energy, HWMON_E_INPUT),
	NULL,
};

static const struct hwmon_ops hmoe_hwmon_ops = {
	.is_visible = hmoe_hwmon_is_visible,
	.read = hmoe_hwmon_read,
};

static const struct hwmon_chip_info hmoe_hwmon_chip = {
	.ops = &hmoe_hwmon_ops,
	.info = hmoe_hwmon_info,
};

/* Managed: goes away with the card's struct device. */
int hmoe_hwmon_init(struct hmoe_device *hdev)
{
	struct device *hwmon;
	bool measured;

	hdev->hwmon_last_ns = ktime_get_ns();
	hdev->hwmon_last_uj = hdev->ops->energy_uj(hdev, &measured);
	hwmon = devm_hwmon_device_register_with_info(hdev->drm.dev, HMOE_DRIVER_NAME, hdev,
						     &hmoe_hwmon_chip, hmoe_hwmon_groups);
	if (IS_ERR(hwmon))
		return PTR_ERR(hwmon);
	hdev->hwmon = hwmon;
	return 0;
}
