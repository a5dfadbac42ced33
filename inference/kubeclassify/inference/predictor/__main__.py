from kubeclassify.inference.predictor.server import main

main()
