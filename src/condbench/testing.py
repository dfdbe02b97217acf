"""Helpers for the tests of plugin packages: the adapter contract as one assertion.

    from condbench.testing import assert_adapter_contract
    def test_my_adapter_honours_the_contract():
        assert_adapter_contract(my_contract_case())   # raises, naming every broken rule
"""
from .contract import ContractCase, ContractError, assert_adapter_contract, check_adapter_contract, randomize_

__all__ = ["ContractCase", "ContractError", "assert_adapter_contract", "check_adapter_contract", "randomize_"]
