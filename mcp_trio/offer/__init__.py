"""offer"""
