# Produces the CodeCarbon 3.3.2 figures used by tests/codecarbon_agreement.rs:
# an offline tracker in process mode (Germany, PUE 1.5) around 3 s of busy
# loop and 2 s of sleep on a 2-core "AMD EPYC" VM; prints the emissions.csv
# row and the CPU time of the region. Run with a venv holding codecarbon==3.3.2.
import time, os, json, resource, logging, csv
from codecarbon import OfflineEmissionsTracker
out = "/tmp/ccrun"
if os.path.exists(out+"/emissions.csv"): os.remove(out+"/emissions.csv")
tr = OfflineEmissionsTracker(country_iso_code="DEU", tracking_mode="process", pue=1.5,
        output_dir=out, log_level="warning", measure_power_secs=60, save_to_file=True)
tr.start()
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
c0 = cpu(); t0 = time.perf_counter()
x = 0
while time.perf_counter() - t0 < 3.0:
    x += 1
time.sleep(2.0)
c1 = cpu(); t1 = time.perf_counter()
em = tr.stop()
row = list(csv.DictReader(open(out+"/emissions.csv")))[-1]
keys = ["duration","emissions","cpu_power","ram_power","cpu_energy","ram_energy","energy_consumed","cpu_count","cpu_model","ram_total_size","tracking_mode","pue","country_iso_code","codecarbon_version"]
res = {k: row[k] for k in keys}
res["region_cpu_time_s"] = c1 - c0
res["region_wall_s"] = t1 - t0
print(json.dumps(res, indent=1))
