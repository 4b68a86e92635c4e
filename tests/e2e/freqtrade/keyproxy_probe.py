"""A strategy that enters at once and exits on ROI at the next check: a whole trade through keyproxy.

The ROI of -1% exits as soon as the open trade is less than 1% down, which on the emulator's flat market is
at once (the exit is priced at the bid, a tick under the fill).
"""

from pandas import DataFrame

from freqtrade.strategy import IStrategy


class KeyproxyProbe(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1m"
    minimal_roi = {"0": -0.01}
    stoploss = -0.99
    startup_candle_count = 1
    process_only_new_candles = False
    use_exit_signal = False
    exit_profit_only = False

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[:, "enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[:, "exit_long"] = 0
        return dataframe
