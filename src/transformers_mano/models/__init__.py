"""The models: MANO of the SwinV2 family (`mano`) and the MANO neural operator (`mano_operator`)."""
